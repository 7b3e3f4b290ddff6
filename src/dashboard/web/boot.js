// Runs before app.js (index.html): starts the app list's calls at once, so
// that they run while app.js loads and starts. The list is the page most
// opened; app.js takes these answers (api.ts, apiGet) instead of asking
// again. The paths are the ones ListView and start() ask for (views.ts,
// main.ts): keep them the same.
(function () {
  var token = sessionStorage.getItem("tidal-token") || "";
  if (!token && !sessionStorage.getItem("tidal-token-none")) return;
  if (/^#\/?apps\//.test(location.hash)) return;
  var headers = token ? { Authorization: "Bearer " + token } : {};
  var early = {};
  ["apps?all=1&limit=60", "history?all=1&window=300&rpsOnly=1&omitIdle=1", "whoami"].forEach(function (path) {
    early[path] = fetch("api/" + path, { headers: headers });
  });
  window.tidalEarly = early;
})();
