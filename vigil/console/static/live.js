// Keeps the on-call banner, mitigations and open incidents of the queue page current without
// a reload: polls the server-rendered fragment /console/live and swaps in each section whose
// data-version changed. Without JavaScript the page works the same; a reload updates it.
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !window.fetch || !window.DOMParser) { return; }
  var src = root.getAttribute("data-live-src");
  var every = Number(root.getAttribute("data-live-every-ms")) || 5000;

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    root.querySelectorAll("[data-live]").forEach(function (old) {
      var next = fresh.getElementById(old.id);
      if (!next || next.getAttribute("data-version") === old.getAttribute("data-version")) {
        return;
      }
      if (old.contains(document.activeElement)) { return; } // never yank a focused control
      old.replaceWith(document.importNode(next, true));
    });
  }

  function poll() {
    if (document.hidden) { setTimeout(poll, every); return; }
    fetch(src, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.redirected || r.status === 401) { return false; } // logged out: stop polling
      return r.ok ? r.text().then(swap) : null;
    }).catch(function () { return null; }).then(function (go) {
      if (go !== false) { setTimeout(poll, every); }
    });
  }
  setTimeout(poll, every);
}());
