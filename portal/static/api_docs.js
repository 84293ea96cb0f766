/* Starts the vendored Swagger UI on /api/v1/docs: a file, not inline script, for the CSP. */
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  var csrf = root.getAttribute("data-csrf");
  window.ui = window.SwaggerUIBundle({
    url: root.getAttribute("data-url"),
    domNode: root,
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,  // no badge from validator.swagger.io: the page asks nothing of others
    requestInterceptor: function (request) {
      // "Try it out" with the login session: writes need the CSRF token (CONTRACT.md).
      if (csrf && request.method && request.method.toUpperCase() !== "GET") {
        request.headers["X-CSRFToken"] = csrf;
      }
      return request;
    }
  });
})();
