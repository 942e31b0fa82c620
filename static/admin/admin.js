/* Dashboard helpers: copy buttons and the on-demand live preview (no inline scripts: the CSP forbids them). */
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Fallback for plain-HTTP hosts other than localhost, where the Clipboard API is unavailable.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = document.execCommand("copy");
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      copyText(source.textContent).then(function () {
        button.textContent = "Copied";
        button.classList.add("copied");
        setTimeout(function () { button.textContent = "Copy"; button.classList.remove("copied"); }, 2000);
      }, function () {
        button.textContent = "Select and copy by hand";
      });
    });
  });

  // The live preview: a draw from the slot's posteriors that records nothing (GET …/preview, dashboard only).
  // Its link is the banner's target, opened in a new tab: the dashboard stays where it is.
  var previewButton = document.getElementById("preview-button");
  var preview = document.getElementById("preview");
  if (previewButton && preview) {
    previewButton.addEventListener("click", function () {
      var caption = document.getElementById("preview-caption");
      fetch(previewButton.getAttribute("data-preview-src"), {credentials: "same-origin",
                                                             headers: {"Accept": "application/json"}})
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (body) {
          var link = document.getElementById("preview-link");
          var image = document.getElementById("preview-image");
          link.href = /^https?:\/\//.test(body.target_url) ? body.target_url : "#";
          link.setAttribute("data-banner-id", body.banner.id);
          image.src = body.banner.image_url;
          image.alt = body.banner.alt;
          caption.textContent = "Banner " + body.banner.id + " (P = " + body.propensity +
            " of being drawn). Not recorded.";
          preview.hidden = false;
          previewButton.textContent = "Serve another";
        })
        .catch(function (error) {
          caption.textContent = "No preview: " + error.message + " (does the slot have an active banner?)";
          preview.hidden = false;
        });
    });
  }
})();
