/* The ops dashboard, live: every few seconds fetch its live part (tiles, charts, tables) from
 * /admin/ops/dashboard/live/ and swap it in place, with no page load. HQ's own code, no library.
 * Without JavaScript the page reloads itself instead (a <noscript> refresh in the page's head).
 * A hidden tab does not fetch; it catches up when shown. A failed fetch (server down, signed out)
 * says so in the status line and the next tick tries again. */
(function () {
  "use strict";

  var root = document.getElementById("ops-live");
  if (!root || !window.fetch) {
    return;
  }
  var url = root.getAttribute("data-url");
  var seconds = parseInt(root.getAttribute("data-interval-s"), 10) || 5;
  var status = document.getElementById("ops-live-status");
  var inFlight = false;

  function say(text, bad) {
    if (status) {
      status.textContent = text;
      status.className = bad ? "help ops-live-bad" : "help";
    }
  }

  function update() {
    if (inFlight || document.hidden) {
      return;
    }
    inFlight = true;
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
        say("Live: updates every " + seconds + " s; last " + new Date().toLocaleTimeString() + ".", false);
        root.dispatchEvent(new CustomEvent("ops:updated"));
      })
      .catch(function (error) {
        say("Live update failed (" + error.message + "); trying again in " + seconds + " s.", true);
      })
      .then(function () {
        inFlight = false;
      });
  }

  say("Live: updates every " + seconds + " s.", false);
  window.setInterval(update, seconds * 1000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      update();
    }
  });
})();
