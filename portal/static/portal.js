/* Portal: small behaviours without inline script (so the CSP can forbid it). */
document.addEventListener("DOMContentLoaded", function () {
  "use strict";

  // Asked on the document, so forms in parts a live page puts in place later ask too.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.matches && form.matches("form[data-confirm]") &&
        !window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
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

  // A select that shows other fields only while it has a value: a schedule's sun event shows
  // its offset and place. Hidden fields are still sent; the server reads them only with a value.
  document.querySelectorAll("select[data-reveals]").forEach(function (select) {
    var groups = select.getAttribute("data-reveals").split(" ").map(function (id) {
      var field = document.getElementById(id);
      return field && field.closest(".form-group");
    }).filter(Boolean);
    function update() {
      groups.forEach(function (group) { group.hidden = !select.value; });
    }
    select.addEventListener("change", update);
    update();
  });

  // A select whose value chooses which fields apply: a rule's kind shows its own fields only.
  // data-fields-of maps each value to the ids of its fields; hidden fields are still sent, and
  // the server reads only the chosen kind's.
  document.querySelectorAll("select[data-fields-of]").forEach(function (select) {
    var fieldsOf = JSON.parse(select.getAttribute("data-fields-of"));
    var ids = [];
    Object.keys(fieldsOf).forEach(function (value) { ids = ids.concat(fieldsOf[value]); });
    function update() {
      var shown = fieldsOf[select.value] || [];
      ids.forEach(function (id) {
        var field = document.getElementById(id);
        var group = field && field.closest(".form-group");
        if (group) { group.hidden = shown.indexOf(id) < 0; }
      });
    }
    select.addEventListener("change", update);
    update();
  });

  // "3 min ago", "vor 3 Min.", "il y a 3 min" in the page's language (<html lang>).
  var lang = document.documentElement.lang || "en";
  var words = window.Intl && Intl.RelativeTimeFormat ?
    new Intl.RelativeTimeFormat(lang, {numeric: "auto", style: "short"}) : null;
  function relative(seconds) {
    var s = Math.abs(seconds), sign = seconds >= 0 ? -1 : 1, amount, unit;
    if (s < 45) { amount = 0; unit = "second"; }
    else if (s < 3600) { amount = Math.round(s / 60); unit = "minute"; }
    else if (s < 86400) { amount = Math.round(s / 3600); unit = "hour"; }
    else { amount = Math.round(s / 86400); unit = "day"; }
    if (words) { return words.format(sign * amount, unit); }
    if (!amount) { return "just now"; }
    var text = amount + {minute: " min", hour: " h", day: " d"}[unit];
    return sign < 0 ? text + " ago" : "in " + text;
  }
  // Each time gets its "(3 min ago)" once, also in parts a live page puts in place later
  // (portal/static/live.js), and every such text moves on with the clock.
  function sayHowLongAgo(el) {
    var at = Date.parse(el.getAttribute("datetime"));
    if (isNaN(at)) { return; }
    var said = el.querySelector(".relative-time");
    if (!said) {
      said = document.createElement("span");
      said.className = "text-muted relative-time";
      el.appendChild(document.createTextNode(" "));
      el.appendChild(said);
    }
    said.textContent = "(" + relative((Date.now() - at) / 1000) + ")";
  }
  function sayAllHowLongAgo(root) {
    root.querySelectorAll("time[data-relative]").forEach(sayHowLongAgo);
  }
  sayAllHowLongAgo(document);
  document.addEventListener("htmx:load", function (event) {
    if (event.detail && event.detail.elt && event.detail.elt.querySelectorAll) {
      sayAllHowLongAgo(event.detail.elt);
    }
  });
  window.setInterval(function () { sayAllHowLongAgo(document); }, 30000);

  var data = document.getElementById("chart-data");
  var target = document.getElementById("device-chart");
  if (data && target && window.uPlot) {
    var chart = JSON.parse(data.textContent);
    var palette = ["#1f6feb", "#d29922", "#2da44e", "#cf222e", "#8250df", "#0a3069"];
    // Every chart spans the chosen range, so they line up, and a metric with one reading
    // does not stretch its axis over years.
    var range = [Date.parse(chart.since) / 1000, Date.parse(chart.until) / 1000];
    var labels = JSON.parse(target.getAttribute("data-labels") || "{}");
    // Times in the user's zone (as everywhere on the page), written the page language's way.
    var zone = target.getAttribute("data-zone") || "UTC";
    // 24-hour times, as the rest of the page writes them (h23: never "24:05").
    var dayFormat = new Intl.DateTimeFormat(lang, {timeZone: zone, day: "numeric", month: "short"});
    var timeFormat = new Intl.DateTimeFormat(lang, {timeZone: zone, hour: "2-digit", minute: "2-digit",
                                                    hourCycle: "h23"});
    var fullFormat = new Intl.DateTimeFormat(lang, {timeZone: zone, year: "numeric", month: "short",
                                                    day: "numeric", hour: "2-digit", minute: "2-digit",
                                                    hourCycle: "h23"});
    // A year's chart has a point per day and ticks a month or more apart: no clock times. Its
    // days are the roll-ups' UTC days, so a point is named by its UTC date (in New York the day
    // starts at 19:00 the evening before).
    var dateFormat = new Intl.DateTimeFormat(lang, {timeZone: "UTC", year: "numeric", month: "short",
                                                    day: "numeric"});
    var monthFormat = new Intl.DateTimeFormat(lang, {timeZone: zone, year: "numeric", month: "short"});
    var pointFormat = chart.bucket_seconds >= 86400 ? dateFormat : fullFormat;
    // Values with at most two decimals, in the page language's digits, with the metric's unit:
    // the one its device sent (chart.units), else the one a well-known metric has.
    var units = {temperature: "\u00b0C", humidity: "%"};
    var number = function (value, unit) {
      if (value == null) { return "--"; }
      var text = value.toLocaleString(lang, {maximumFractionDigits: 2});
      return unit ? text + (unit === "%" ? "\u00a0%" : "\u00a0" + unit) : text;
    };
    var at = function (seconds) { return new Date(seconds * 1000); };
    var ticks = function (u, splits, axis, space, step) {
      var lastDay = null;
      return splits.map(function (seconds) {
        if (step >= 28 * 86400) { return monthFormat.format(at(seconds)); }
        var day = dayFormat.format(at(seconds));
        var text = step >= 86400 ? day : timeFormat.format(at(seconds)) +
          (day !== lastDay ? "\n" + day : "");
        lastDay = day;
        return text;
      });
    };
    Object.keys(chart.metrics).forEach(function (metric, i) {
      var s = chart.metrics[metric];
      var box = document.createElement("div");
      box.className = "mb-2";
      box.setAttribute("data-metric", metric);
      target.appendChild(box);
      var width = Math.max(280, target.clientWidth - 8);
      // The unit the device sent with the metric, else the one a well-known metric has.
      var unit = (chart.units || {})[metric] || units[metric.toLowerCase()] || "";
      var value = function (u, v) { return number(v, unit); };
      new window.uPlot({
        title: unit ? metric + " (" + unit + ")" : metric, width: width, height: 180,
        tzDate: function (seconds) { return window.uPlot.tzDate(at(seconds), zone); },
        series: [{label: labels.time || "Time", value: function (u, seconds) {
                   return seconds == null ? "--" : pointFormat.format(at(seconds)); }},
                 {label: labels.avg || "avg", stroke: palette[i % palette.length], width: 2,
                  value: value},
                 {label: labels.min || "min", stroke: "#8c959f", dash: [4, 4], value: value},
                 {label: labels.max || "max", stroke: "#8c959f", dash: [4, 4], value: value}],
        scales: {x: {time: true, range: range}},
        axes: [{values: ticks},
               {size: 60, values: function (u, splits) {
                 return splits.map(function (v) { return number(v, unit); }); }}]
      }, [s.t, s.avg, s.min, s.max], box);
    });
  }
});

// A list's filter boxes suggest values as one types (a <datalist> the list page draws for
// filters that have some: device names). Flask-Admin names each box "flt<n>_<filter>_<op>" and
// draws the boxes when the page has loaded, and again as filters are added.
window.addEventListener("load", function () {
  "use strict";
  var form = document.getElementById("filter_form");
  var lists = document.querySelectorAll("datalist[data-filter-suggestions]");
  if (!form || !lists.length) { return; }
  function suggest() {
    form.querySelectorAll("input.filter-val").forEach(function (input) {
      lists.forEach(function (list) {
        var key = list.getAttribute("data-filter-suggestions");
        if (new RegExp("^flt\\d+_" + key + "_").test(input.name || "")) {
          input.setAttribute("list", list.id);
          input.setAttribute("autocomplete", "off");
        }
      });
    });
  }
  suggest();
  new MutationObserver(suggest).observe(form, {childList: true, subtree: true,
                                               attributes: true, attributeFilter: ["name"]});
});

// A schedule form's next runs, previewed as one types: the server computes them with the same
// rules it saves with (GET /admin/schedules/preview/). Without JavaScript the box stays hidden.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var box = document.getElementById("schedule-preview");
  var kind = document.getElementById("kind");
  var form = kind && kind.form;
  if (!box || !form) { return; }
  var names = ["kind", "cron", "interval_seconds", "run_at", "sun_event", "sun_offset_minutes",
               "sun_latitude", "sun_longitude", "timezone", "start_at", "end_at"];
  var zone = document.getElementById("timezone");
  var after = (zone && zone.closest(".form-group")) || kind.closest(".form-group");
  after.parentNode.insertBefore(box, after.nextSibling);
  box.hidden = false;
  var errorList = box.querySelector("[data-preview-errors]");
  var rows = box.querySelector("[data-preview-times]");
  var table = rows.closest("table");
  // A blank new form is not an error yet: complaints show once a timing field was touched.
  var timer = null, latest = 0, touched = false;

  function labelOf(name) {
    var label = form.querySelector('label[for="' + name + '"]');
    return label ? label.textContent.replace(/\s*\*\s*$/, "").trim() : name;
  }
  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }
  function show(answer) {
    errorList.textContent = "";
    rows.textContent = "";
    Object.keys(touched ? answer.errors || {} : {}).forEach(function (name) {
      var li = document.createElement("li");
      li.textContent = labelOf(name) + ": " + answer.errors[name];
      errorList.appendChild(li);
    });
    (answer.times || []).forEach(function (t) {
      var tr = document.createElement("tr");
      tr.appendChild(cell(t.utc_text));
      tr.appendChild(cell(t.local_text));
      rows.appendChild(tr);
    });
    table.hidden = !(answer.times || []).length;
  }
  function refresh() {
    var query = new URLSearchParams();
    var data = new FormData(form);
    names.forEach(function (name) {
      if (data.has(name)) { query.set(name, data.get(name)); }
    });
    var url = box.getAttribute("data-url");
    var ticket = ++latest;
    fetch(url + (url.indexOf("?") < 0 ? "?" : "&") + query.toString(),
          {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) { if (answer && ticket === latest) { show(answer); } })
      .catch(function () { /* a failed preview leaves the form as it is */ });
  }
  function later() {
    touched = true;
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 300);
  }
  names.forEach(function (name) {
    var field = document.getElementById(name);
    if (field) {
      field.addEventListener("input", later);
      field.addEventListener("change", later);
    }
  });
  refresh();
});
