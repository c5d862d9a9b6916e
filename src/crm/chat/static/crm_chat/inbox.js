// Inbox list: live updates. Rows are re-rendered by the server (HTMX swap of the
// list partial with the current filters), so the agent's filter, page and scroll stay.
(function () {
  "use strict";
  var timer = null;
  function refresh() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var list = document.getElementById("inbox-list");
      if (!list || !window.htmx) return;
      var url = list.dataset.refreshUrl;
      window.htmx.ajax("GET", url, { target: "#inbox-list", select: "#inbox-list", swap: "outerHTML" });
    }, 300);
  }
  document.addEventListener("crm-chat:event", function (e) {
    var t = e.detail.type;
    if (t === "message" || t === "opened" || t === "status" || t === "assigned" || t === "read") refresh();
  });
  document.addEventListener("crm-chat:changed", refresh);
})();
