/*!
 * Banner Bandit embed script (dependency-free, ES2017, no build step).
 *
 * Usage on a publisher page:
 *   <script src="https://HOST/static/embed.js" async></script>
 *   <div data-banner-bandit data-tenant="demo" data-slot="home-hero"
 *        data-location="Mumbai" data-customer-id="c1" data-referrer-id="r1"></div>
 *
 * Optional: data-api="https://HOST" overrides the API base, which otherwise
 * defaults to the origin this script was loaded from.
 *
 * Divs added later can be rendered with window.BannerBandit.render(el) or
 * window.BannerBandit.renderAll(). Processed divs carry
 * data-bb-state="loading" | "done" | "error" and are not rendered twice; to
 * re-render (e.g. after changing data-location) remove data-bb-state first.
 */
(function () {
  "use strict";

  if (window.BannerBandit && window.BannerBandit.__bannerBandit) {
    // Script included twice: reuse the existing instance.
    window.BannerBandit.renderAll();
    return;
  }

  var SELECTOR = "[data-banner-bandit]";
  var STATE_ATTR = "data-bb-state";
  var SCRIPT_PATH = "/static/embed.js";

  // Must be captured synchronously while this script is executing.
  var ownScript = document.currentScript;

  function findOwnScriptSrc() {
    if (ownScript && ownScript.src) {
      return ownScript.src;
    }
    var scripts = document.querySelectorAll("script[src]");
    for (var i = 0; i < scripts.length; i++) {
      var src = scripts[i].src;
      try {
        if (new URL(src, document.baseURI).pathname.endsWith(SCRIPT_PATH)) {
          return src;
        }
      } catch (e) {
        /* ignore unparsable src */
      }
    }
    return null;
  }

  var defaultApiBase = (function () {
    var src = findOwnScriptSrc();
    if (src) {
      try {
        return new URL(src, document.baseURI).origin;
      } catch (e) {
        /* fall through */
      }
    }
    return window.location.origin;
  })();

  function stripTrailingSlash(s) {
    return s.replace(/\/+$/, "");
  }

  function apiBaseFor(el) {
    var api = (el.getAttribute("data-api") || "").trim();
    return stripTrailingSlash(api || defaultApiBase);
  }

  // Resolve a URL from the response against the API base and allow only
  // http(s), so a bad response can never inject e.g. "javascript:" links.
  function safeUrl(value, base) {
    if (typeof value !== "string" || value === "") {
      return null;
    }
    try {
      var u = new URL(value, base + "/");
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  function clear(el) {
    while (el.firstChild) {
      el.removeChild(el.firstChild);
    }
  }

  // Per-element request counter so a slow, stale response never overwrites
  // a newer one (e.g. when the location is changed quickly).
  var generations = new WeakMap();

  function fail(el, gen, message) {
    if (generations.get(el) !== gen) {
      return;
    }
    clear(el);
    el.setAttribute(STATE_ATTR, "error");
    if (message) {
      console.warn("[BannerBandit] " + message);
    }
  }

  async function render(el) {
    if (!el || el.nodeType !== 1 || el.hasAttribute(STATE_ATTR)) {
      return;
    }
    var gen = (generations.get(el) || 0) + 1;
    generations.set(el, gen);
    el.setAttribute(STATE_ATTR, "loading");

    var tenant = (el.getAttribute("data-tenant") || "").trim();
    var slot = (el.getAttribute("data-slot") || "").trim();
    if (!tenant || !slot) {
      fail(el, gen, "data-tenant and data-slot are required");
      return;
    }

    var params = new URLSearchParams();
    var optional = [
      ["data-location", "location"],
      ["data-customer-id", "customer_id"],
      ["data-referrer-id", "referrer_id"]
    ];
    optional.forEach(function (pair) {
      var v = (el.getAttribute(pair[0]) || "").trim();
      if (v) {
        params.append(pair[1], v);
      }
    });

    var api = apiBaseFor(el);
    var query = params.toString();
    var url = api + "/v1/serve/" + encodeURIComponent(tenant) + "/" +
      encodeURIComponent(slot) + (query ? "?" + query : "");

    var res;
    var body = null;
    try {
      res = await fetch(url, {
        method: "GET",
        cache: "no-store",
        headers: { "Accept": "application/json" }
      });
    } catch (e) {
      fail(el, gen, "network error: " + (e && e.message ? e.message : e));
      return;
    }
    try {
      body = await res.json();
    } catch (e) {
      body = null;
    }

    if (!res.ok) {
      fail(el, gen, body && body.error ? String(body.error) : "HTTP " + res.status);
      return;
    }

    var banner = body && body.banner;
    var href = body && safeUrl(body.click_url, api);
    var src = banner && safeUrl(banner.image_url, api);
    if (!href || !src) {
      fail(el, gen, "malformed serve response");
      return;
    }
    if (generations.get(el) !== gen) {
      return; // a newer render() superseded this one
    }

    var a = document.createElement("a");
    a.href = href;
    a.rel = "noopener sponsored";
    if (body.impression_id != null) {
      a.setAttribute("data-impression-id", String(body.impression_id));
    }

    var img = document.createElement("img");
    img.src = src;
    img.alt = banner.alt != null ? String(banner.alt) : "";
    img.style.maxWidth = "100%";
    img.style.height = "auto";
    img.style.display = "block";
    a.appendChild(img);

    clear(el);
    el.appendChild(a);
    el.setAttribute(STATE_ATTR, "done");
    el.dispatchEvent(new CustomEvent("bannerbandit:rendered", {
      bubbles: true,
      detail: body
    }));
  }

  function renderAll(root) {
    var scope = root && root.querySelectorAll ? root : document;
    var els = scope.querySelectorAll(SELECTOR);
    var jobs = [];
    for (var i = 0; i < els.length; i++) {
      if (!els[i].hasAttribute(STATE_ATTR)) {
        jobs.push(render(els[i]));
      }
    }
    return Promise.all(jobs).then(function () {});
  }

  window.BannerBandit = {
    render: render,
    renderAll: renderAll,
    __bannerBandit: true
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      renderAll();
    });
  } else {
    renderAll();
  }
})();
