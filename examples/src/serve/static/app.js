// origami serve: keyboard help only; every page works without this file.
// "/" focuses the search box; j / k move through the hits; Enter opens the hit's machine.
(function () {
  "use strict";
  var cur = -1;
  function hits() { return document.querySelectorAll("li.hit"); }
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }
  function select(i) {
    var h = hits();
    if (h.length === 0) { return; }
    if (cur >= 0 && cur < h.length) { h[cur].classList.remove("cur"); }
    cur = Math.max(0, Math.min(h.length - 1, i));
    h[cur].classList.add("cur");
    h[cur].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (e.key === "/" && !typing(e)) {
      var q = document.getElementById("q");
      if (q) { e.preventDefault(); q.focus(); q.select(); }
      return;
    }
    if (typing(e)) {
      if (e.key === "Escape") { e.target.blur(); }
      return;
    }
    if (e.key === "j") { select(cur + 1); }
    else if (e.key === "k") { select(cur - 1); }
    else if (e.key === "Enter" && cur >= 0) {
      var h = hits()[cur];
      var to = h && h.getAttribute("data-machine");
      // Only a path of this site (the server writes it, percent-encoded).
      if (to && to.charAt(0) === "/" && to.charAt(1) !== "/") { window.location.assign(to); }
    }
  });
})();
