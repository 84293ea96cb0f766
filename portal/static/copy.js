/* Copy buttons: <button data-copy="ID" data-copied="Copied"> copies the text of element ID.
   Kept apart from portal.js so the page needs no inline script (the CSP forbids it). */
document.addEventListener("DOMContentLoaded", function () {
  "use strict";

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) { return; }  // the text stays selectable by hand
    var label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        button.textContent = button.getAttribute("data-copied") || label;
        window.setTimeout(function () { button.textContent = label; }, 2000);
      });
    });
  });
});
