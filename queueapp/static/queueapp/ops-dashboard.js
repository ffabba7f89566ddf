/* The ops dashboard, live: fetch its live part (tiles, charts, tables) from /admin/ops/dashboard/live/
 * and swap it in place, with no page load. HQ's own code, no library. Without JavaScript the page
 * reloads itself instead (a <noscript> refresh in the page's head).
 *
 * One request at a time: the next starts `data-interval-s` seconds after the last answer, or three
 * times as long as that answer took when the server is slow (a dashboard over millions of jobs must
 * not keep a database core busy). A hidden tab does not fetch; it catches up when shown. A failed
 * fetch (server down, signed out) says so in the status line, and the next one tries again. */
(function () {
  "use strict";

  var root = document.getElementById("ops-live");
  if (!root || !window.fetch) {
    return;
  }
  var url = root.getAttribute("data-url");
  var everyMs = (parseInt(root.getAttribute("data-interval-s"), 10) || 5) * 1000;
  var status = document.getElementById("ops-live-status");
  var inFlight = false;
  var timer = null;

  function say(text, bad) {
    if (status) {
      status.textContent = text;
      status.className = bad ? "help ops-live-bad" : "help";
    }
  }

  function schedule(delayMs) {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, delayMs);
  }

  function update() {
    if (inFlight) {
      return;
    }
    if (document.hidden) {
      schedule(everyMs);
      return;
    }
    inFlight = true;
    var started = Date.now();
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        // The admin answers a signed-out request with its login page: anything but the fragment is refused.
        if (!response.ok || response.headers.get("X-HQ-Fragment") !== "ops-dashboard") {
          throw new Error(response.ok ? "signed out? reload the page" : "HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        root.innerHTML = html;
        var tookMs = Date.now() - started;
        var nextMs = Math.max(everyMs, 3 * tookMs);
        say(
          "Live: updated " + new Date().toLocaleTimeString() + ", next in " + Math.round(nextMs / 1000) + " s" +
            (nextMs > everyMs ? " (the server took " + (tookMs / 1000).toFixed(1) + " s)." : "."),
          false
        );
        return nextMs;
      })
      .catch(function (error) {
        say("Live update failed (" + error.message + "); trying again in " + everyMs / 1000 + " s.", true);
        return everyMs;
      })
      .then(function (nextMs) {
        inFlight = false;
        schedule(nextMs);
      });
  }

  say("Live: updates every " + everyMs / 1000 + " s.", false);
  schedule(everyMs);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      update();
    }
  });
})();
