/* Portal: small behaviours without inline script (so the CSP can forbid it). */
document.addEventListener("DOMContentLoaded", function () {
  "use strict";

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });

  // Flask-Admin's "javascript:void(0)" links would be blocked (and reported) by the CSP.
  document.querySelectorAll('a[href^="javascript:"]').forEach(function (link) {
    link.setAttribute("href", "#");
    link.addEventListener("click", function (event) { event.preventDefault(); });
  });

  document.querySelectorAll("[data-action]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      if (window.modelActions) { window.modelActions.execute(link.getAttribute("data-action")); }
    });
  });

  function relative(seconds) {
    var ago = seconds >= 0, s = Math.abs(seconds), text;
    if (s < 45) { text = "just now"; return text; }
    if (s < 3600) { text = Math.round(s / 60) + " min"; }
    else if (s < 86400) { text = Math.round(s / 3600) + " h"; }
    else { text = Math.round(s / 86400) + " d"; }
    return ago ? text + " ago" : "in " + text;
  }
  document.querySelectorAll("time[data-relative]").forEach(function (el) {
    var at = Date.parse(el.getAttribute("datetime"));
    if (!isNaN(at)) {
      el.insertAdjacentHTML("beforeend", ' <span class="text-muted">(' +
        relative((Date.now() - at) / 1000) + ")</span>");
    }
  });

  var data = document.getElementById("chart-data");
  var target = document.getElementById("device-chart");
  if (data && target && window.uPlot) {
    var chart = JSON.parse(data.textContent);
    var palette = ["#1f6feb", "#d29922", "#2da44e", "#cf222e", "#8250df", "#0a3069"];
    // Every chart spans the chosen range, so they line up, and a metric with one reading
    // does not stretch its axis over years.
    var range = [Date.parse(chart.since) / 1000, Date.parse(chart.until) / 1000];
    Object.keys(chart.metrics).forEach(function (metric, i) {
      var s = chart.metrics[metric];
      var box = document.createElement("div");
      box.className = "mb-2";
      box.setAttribute("data-metric", metric);
      target.appendChild(box);
      var width = Math.max(280, target.clientWidth - 8);
      new window.uPlot({
        title: metric, width: width, height: 180,
        series: [{}, {label: "avg", stroke: palette[i % palette.length], width: 2},
                 {label: "min", stroke: "#8c959f", dash: [4, 4]},
                 {label: "max", stroke: "#8c959f", dash: [4, 4]}],
        scales: {x: {time: true, range: range}},
        axes: [{}, {size: 50}]
      }, [s.t, s.avg, s.min, s.max], box);
    });
  }
});
