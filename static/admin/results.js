/* Results page charts (Chart.js, vendored). Data comes from the JSON block the server rendered. */
(function () {
  "use strict";

  var filters = document.getElementById("results-filters");
  ["location-select", "days-select"].forEach(function (id) {
    var el = document.getElementById(id);
    if (el && filters) {
      el.addEventListener("change", function () { filters.submit(); });
    }
  });

  var source = document.getElementById("chart-data");
  if (!source || typeof Chart === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  var palette = ["#2563eb", "#e4572e", "#16a34a", "#9333ea", "#ca8a04", "#0891b2", "#db2777", "#4b5563",
                 "#65a30d", "#7c3aed", "#ea580c", "#0d9488"];
  function color(i) { return palette[i % palette.length]; }
  function percentTicks(value) { return (100 * value).toFixed(value < 0.1 ? 1 : 0) + "%"; }
  var common = {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    interaction: { mode: "index", intersect: false },
    plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } }
  };

  // Points on the lines: an hour between two empty hours (a new slot has only the current one) is a lone
  // point, which a line alone does not draw. Short ranges show every point; long ones only the lone ones.
  function pointRadius(ctx) {
    var values = ctx.dataset.data, i = ctx.dataIndex;
    if (values[i] === null || values[i] === undefined) { return 0; }
    var lone = (i === 0 || values[i - 1] === null) && (i === values.length - 1 || values[i + 1] === null);
    return lone || values.length <= 48 ? 2.5 : 0;
  }

  function hourly(id, series, options) {
    var canvas = document.getElementById(id);
    if (!canvas) { return; }
    new Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: data.banners.map(function (banner, i) {
          var dataset = typeof options.dataset === "function" ? options.dataset(i) : {};
          return Object.assign({
            label: banner,
            data: (series[banner] || []),
            borderColor: color(i),
            backgroundColor: color(i) + "55",
            pointRadius: pointRadius,
            pointHoverRadius: 4,
            borderWidth: 1.5,
            spanGaps: false
          }, dataset);
        })
      },
      options: Object.assign({}, common, {
        scales: {
          x: { ticks: { maxTicksLimit: 8, autoSkip: true } },
          y: Object.assign({ beginAtZero: true, ticks: { callback: percentTicks } }, options.y || {})
        },
        plugins: Object.assign({}, common.plugins, {
          tooltip: { callbacks: { label: function (ctx) {
            var v = ctx.parsed.y;
            return ctx.dataset.label + ": " + (v === null ? "no impressions" : (100 * v).toFixed(2) + "%");
          } } }
        })
      })
    });
  }

  hourly("chart-ctr", data.ctr, {});
  // A stacked area: each banner's band is filled down to the one below it.
  hourly("chart-share", data.share, {
    dataset: function (i) { return { fill: i === 0 ? "origin" : "-1", stack: "share" }; },
    y: { stacked: true, max: 1 }
  });

  var densityCanvas = document.getElementById("chart-density");
  if (densityCanvas) {
    var x = data.density.x;
    new Chart(densityCanvas, {
      type: "line",
      data: {
        datasets: data.banners.map(function (banner, i) {
          var ys = data.density.banners[banner] || [];
          return {
            label: banner,
            data: x.map(function (xv, k) { return { x: xv, y: ys[k] }; }),
            borderColor: color(i),
            backgroundColor: color(i) + "22",
            fill: true,
            pointRadius: 0,
            borderWidth: 1.5
          };
        })
      },
      options: Object.assign({}, common, {
        interaction: { mode: "nearest", intersect: false },
        scales: {
          x: { type: "linear", min: 0, max: x.length ? x[x.length - 1] : 1, title: { display: true, text: "CTR" },
               ticks: { callback: percentTicks } },
          y: { beginAtZero: true, title: { display: true, text: "density" } }
        },
        plugins: Object.assign({}, common.plugins, {
          tooltip: { callbacks: { title: function (items) { return "CTR " + (100 * items[0].parsed.x).toFixed(2) + "%"; } } }
        })
      })
    });
  }
})();
