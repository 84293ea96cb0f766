/* Live parts of pages (portal/admin/live.py). htmx polls; this file sends the version of what
   a poller shows (the answer is 204 while nothing changed), keeps the version of each answer,
   skips polls while the tab is in the background and asks at once when it comes back. */
(function () {
  "use strict";
  var HEADER = "X-Portal-Live-Version";
  function isPoller(elt) { return elt && elt.hasAttribute && elt.hasAttribute("data-live-poller"); }

  document.addEventListener("htmx:configRequest", function (event) {
    if (isPoller(event.detail.elt)) {
      event.detail.headers[HEADER] = event.detail.elt.getAttribute("data-live-version") || "";
    }
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (document.hidden && isPoller(event.detail.elt)) { event.preventDefault(); }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var version = event.detail.xhr && event.detail.xhr.getResponseHeader(HEADER);
    if (isPoller(event.detail.elt) && event.detail.successful && version) {
      event.detail.elt.setAttribute("data-live-version", version);
    }
  });
  // What the page shows is gone (the device was deleted) or out of reach now: stop asking.
  // Other failures (a 503 while the database restarts) keep the poller going; it recovers.
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr && event.detail.xhr.status;
    if (isPoller(event.detail.elt) && (status === 403 || status === 404)) {
      event.detail.elt.remove();
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (document.hidden || !window.htmx) { return; }
    document.querySelectorAll("[data-live-poller]").forEach(function (elt) {
      window.htmx.trigger(elt, "portal:refresh");
    });
  });
})();
