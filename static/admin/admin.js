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

  var previewButton = document.getElementById("preview-button");
  var preview = document.getElementById("preview");
  if (previewButton && preview) {
    previewButton.addEventListener("click", function () {
      var src = previewButton.getAttribute("data-preview-src");
      // A fresh URL each time, so every click is a new serve.
      preview.src = src + (src.indexOf("?") < 0 ? "?" : "&") + "_=" + Date.now();
      preview.hidden = false;
      previewButton.textContent = "Serve another";
    });
  }
})();
