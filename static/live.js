// The live parts of pages: on each event of an SSE stream, re-read the page
// and swap its #live part. The stream is the run's (/api/runs/<id>/events,
// which ends with the run) or the one named by data-sse (the class's
// endpoints: it never ends, the browser reconnects after a restart).
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
  var sse = live.getAttribute("data-sse");
  var es = new EventSource(sse || "/api/runs/" + encodeURIComponent(run) + "/events");
  es.addEventListener("run", refresh);
  es.addEventListener("class", refresh);
  es.addEventListener("lagged", refresh);
  es.onerror = function () {
    if (sse) return; // EventSource reconnects by itself
    es.close();
    refresh();
  };
})();
