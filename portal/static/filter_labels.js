/* Names for what Flask-Admin's filter script draws without one: each filter's value box and
   operation (named after the filter: "State") and select2's clear links. */
(function () {
  "use strict";

  function nameFilters(form) {
    var clear = form.getAttribute("data-clear-label");
    form.querySelectorAll("table.filters tr").forEach(function (row) {
      var remove = row.querySelector(".remove-filter");
      var field = remove ? remove.textContent.replace("\u00d7", "").trim() : "";
      row.querySelectorAll(".filter-val, select.filter-op, input.select2-focusser").forEach(
        function (input) {
          if (!input.hasAttribute("aria-label") && !input.hasAttribute("aria-labelledby")) {
            input.setAttribute("aria-label", field);
          }
        }
      );
      row.querySelectorAll("a.select2-search-choice-close").forEach(function (link) {
        link.setAttribute("aria-label", clear);
      });
    });
  }

  // Flask-Admin draws the filters when the page is ready, and again as they are added.
  window.addEventListener("load", function () {
    var form = document.getElementById("filter_form");
    if (!form) { return; }
    nameFilters(form);
    new MutationObserver(function () { nameFilters(form); }).observe(form, {
      childList: true,
      subtree: true,
    });
  });
}());
