// The report's behaviour: draw the curves, sort and filter the points table, and draw a
// point's distributions and timeline when it is opened. Everything it draws comes from the
// JSON block #report-data; it fetches nothing.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"] };

  function draw(el, figure) {
    return Plotly.newPlot(el, figure.data, figure.layout, config);
  }

  var drawing = [];
  document.querySelectorAll(".suite-plot").forEach(function (el) {
    var suite = data.suites[Number(el.dataset.suiteIndex)];
    drawing.push(draw(el, suite.figures[Number(el.dataset.figure)]));
  });

  // -- the points table: sort by a column, filter by name ---------------------------------
  var table = document.getElementById("points-table");
  if (table) {
    table.querySelectorAll("th[data-col]").forEach(function (th) {
      th.addEventListener("click", function () { sortBy(th); });
    });
    var filter = document.getElementById("filter");
    filter.addEventListener("input", function () {
      var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      table.querySelectorAll("tbody.point").forEach(function (body) {
        var name = body.dataset.name.toLowerCase();
        var keep = words.every(function (w) { return name.indexOf(w) >= 0; });
        body.hidden = !keep;
        if (keep) { shown += 1; }
      });
      document.getElementById("shown").textContent = String(shown);
    });
    table.addEventListener("click", function (event) {
      var button = event.target.closest("button.open");
      if (button) { toggle(button); }
    });
  }

  function sortBy(th) {
    var col = Number(th.dataset.col);
    var numeric = th.dataset.type === "number";
    var ascending = !th.classList.contains("sorted-asc");
    table.querySelectorAll("th").forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
    th.classList.add(ascending ? "sorted-asc" : "sorted-desc");
    var bodies = Array.prototype.slice.call(table.querySelectorAll("tbody.point"));
    function key(body) {
      var raw = body.querySelector("tr.summary").children[col].dataset.sort;
      return numeric ? (raw === "" ? null : Number(raw)) : raw.toLowerCase();
    }
    bodies.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === y) { return 0; }
      if (x === null) { return 1; }  // points without the metric go last either way
      if (y === null) { return -1; }
      return (x < y ? -1 : 1) * (ascending ? 1 : -1);
    });
    bodies.forEach(function (body) { table.appendChild(body); });
  }

  // -- a point's details: distributions (histogram and CDF) and its server timeline -------
  var titles = { ttft: "TTFT (ms)", tpot: "TPOT (ms)", per_token_itl: "per-token ITL (ms)", e2el: "E2EL (ms)" };

  function toggle(button) {
    var body = button.closest("tbody");
    var details = body.querySelector("tr.details");
    details.hidden = !details.hidden;
    button.setAttribute("aria-expanded", String(!details.hidden));
    var box = details.querySelector(".detail-plots");
    if (!details.hidden && !box.dataset.drawn) {
      box.dataset.drawn = "1";
      drawDetails(box, data.details[box.dataset.n] || {});
    }
  }

  function panel(box) {
    var el = document.createElement("div");
    el.className = "plot detail-plot";
    box.appendChild(el);
    return el;
  }

  function layout(title, x, y) {
    return { title: { text: title, font: { size: 13 } }, height: 260, margin: { l: 50, r: 15, t: 35, b: 40 },
             xaxis: { title: { text: x } }, yaxis: { title: { text: y } }, legend: { font: { size: 10 } } };
  }

  function drawDetails(box, details) {
    var samples = details.samples || {};
    Object.keys(titles).forEach(function (name) {
      var values = samples[name];
      if (!values || !values.length) { return; }
      draw(panel(box), { data: [{ type: "histogram", x: values, name: name, marker: { color: "#1f77b4" } }],
                         layout: layout(titles[name] + ": histogram", "ms", "requests") });
    });
    var cdf = Object.keys(titles).filter(function (n) { return samples[n] && samples[n].length; }).map(function (name) {
      var values = samples[name];  // sorted by the page's writer
      return { type: "scatter", mode: "lines", name: titles[name], x: values,
               y: values.map(function (_, i) { return (i + 1) / values.length; }) };
    });
    if (cdf.length) {
      var l = layout("CDF", "ms", "fraction of requests");
      l.xaxis.type = "log";
      draw(panel(box), { data: cdf, layout: l });
    }
    var timeline = details.timeline;
    if (timeline && timeline.t_s) {
      var groups = [
        ["requests", ["running", "waiting"]],
        ["KV cache usage", ["kv_cache_usage"]],
        ["GPU utilisation (%)", ["gpu_util_pct"]],
        ["GPU power (W)", ["gpu_power_w"]],
        ["GPU memory (MiB)", ["gpu_mem_used_mib"]],
      ];
      groups.forEach(function (group) {
        var traces = group[1].filter(function (c) { return timeline[c]; }).map(function (c) {
          return { type: "scatter", mode: "lines", name: c, x: timeline.t_s, y: timeline[c] };
        });
        if (traces.length) { draw(panel(box), { data: traces, layout: layout("server: " + group[0], "s", "") }); }
      });
    }
    if (!box.children.length) {
      box.textContent = "No per-request samples or timeline were recorded for this point.";
    }
    (details.reasons || []).forEach(function (reason) {
      var note = document.createElement("p");
      note.className = "note";
      note.textContent = reason;
      box.appendChild(note);
    });
  }

  Promise.all(drawing).then(function () { document.body.dataset.ready = "1"; });
})();
