// The demo publisher page (templates/demo/index.html): city picker and the 'served' line.
(function () {
  "use strict";
  var slotEl = document.getElementById("hero-banner");
  var select = document.getElementById("city-select");
  var info = document.getElementById("served-info");

  select.addEventListener("change", function () {
    var city = select.value;
    if (city) {
      slotEl.setAttribute("data-location", city);
    } else {
      slotEl.removeAttribute("data-location");
    }
    slotEl.removeAttribute("data-bb-state");
    info.textContent = "";
    // If embed.js has not loaded yet it will pick the div up itself.
    if (window.BannerBandit) {
      window.BannerBandit.render(slotEl);
    }
  });

  slotEl.addEventListener("bannerbandit:rendered", function (ev) {
    var d = ev.detail || {};
    var banner = d.banner || {};
    info.textContent = "Served " + (banner.id || "?") +
      (d.location ? " for " + d.location : "") +
      " · impression " + (d.impression_id || "?");
  });
})();
