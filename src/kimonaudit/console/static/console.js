// Progressive enhancement only: every page works without this file.
// "/" focuses the query box, as in most log viewers.
document.addEventListener("keydown", function (e) {
  if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
  var t = e.target;
  if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
  var q = document.getElementById("q");
  if (q) { e.preventDefault(); q.focus(); q.select(); }
});
