// Usher console: progressive enhancement only — every page works without this file.
// Live refresh of the sessions table (keeps filters, sort, selection and scroll),
// keyboard shortcuts, select-all.
(function () {
  "use strict";
  var prefix = document.body.getAttribute("data-prefix") || "/usher";

  // Keyboard: "/" focuses the filter; "g" then s/u/d/c jumps; "?" lists the keys.
  var pendingG = false;
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    if (e.key === "/") {
      var f = document.querySelector(".filters input");
      if (f) { e.preventDefault(); f.focus(); }
    } else if (e.key === "?") {
      var h = document.getElementById("shortcuts");
      if (h) h.hidden = !h.hidden;
    } else if (pendingG) {
      pendingG = false;
      var to = { s: "/admin/sessions", u: "/admin/users", d: "/admin/", c: "/admin/clients" }[e.key];
      if (to) window.location.href = prefix + to;
    } else if (e.key === "g") {
      pendingG = true;
      setTimeout(function () { pendingG = false; }, 1500);
    }
  });

  var all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      var table = all.closest("table");
      table.querySelectorAll("tbody input[type=checkbox]").forEach(function (b) { b.checked = all.checked; });
    });
  }

  // Live: refetch this very URL every 5 s and swap the rows and the count in place.
  var table = document.querySelector("table.sessions");
  var toggle = document.getElementById("live-toggle");
  if (!table || !toggle) return;
  var paused = false;
  toggle.hidden = false;
  toggle.addEventListener("click", function () {
    paused = !paused;
    toggle.textContent = paused ? "Resume live updates" : "Pause live updates";
  });
  function refresh() {
    if (paused || document.hidden) return;
    var checked = {};
    table.querySelectorAll("tbody input[type=checkbox]:checked").forEach(function (b) { checked[b.value] = true; });
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var body = doc.querySelector("table.sessions tbody");
        var count = doc.querySelector(".count");
        if (!body) return;
        body.querySelectorAll("input[type=checkbox]").forEach(function (b) { b.checked = !!checked[b.value]; });
        table.replaceChild(document.importNode(body, true), table.querySelector("tbody"));
        var here = document.querySelector(".count");
        if (count && here) here.replaceWith(document.importNode(count, true));
      })
      .catch(function () {});
  }
  setInterval(refresh, 5000);
})();
