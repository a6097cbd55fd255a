// The run pipeline's live updates: on each event of the run's SSE stream
// (/api/runs/<id>/events), re-read the page and swap the #live part.
// Without JavaScript the page is the same, refreshed by hand.
(function () {
  var live = document.getElementById("live");
  if (!live || !window.EventSource || live.getAttribute("data-running") !== "true") return;
  var run = live.getAttribute("data-run");
  var pending = false;
  function refresh() {
    if (pending) return;
    pending = true;
    setTimeout(function () {
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("live");
          if (fresh) live.replaceWith(fresh);
          live = fresh || live;
          pending = false;
        })
        .catch(function () { pending = false; });
    }, 200);
  }
  var es = new EventSource("/api/runs/" + encodeURIComponent(run) + "/events");
  es.addEventListener("run", refresh);
  es.addEventListener("lagged", refresh);
  es.onerror = function () { es.close(); refresh(); };
})();
