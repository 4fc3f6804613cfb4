// The campaigns page: every few seconds, the progress of each campaign shown is read again.
(function () {
  "use strict";
  var table = document.getElementById("campaigns");
  if (!table) return;
  var url = table.getAttribute("data-progress-url");

  function update(campaign) {
    var row = table.querySelector('tr[data-campaign="' + campaign.id + '"]');
    if (!row) return;
    row.querySelectorAll("[data-field]").forEach(function (cell) {
      var name = cell.getAttribute("data-field");
      var value = name === "status" ? campaign.status : campaign.progress[name];
      if (value !== undefined) cell.textContent = String(value);
    });
  }

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) data.campaigns.forEach(update); })
      .catch(function () {})
      .finally(function () { window.setTimeout(refresh, 3000); });
  }
  window.setTimeout(refresh, 3000);
})();
