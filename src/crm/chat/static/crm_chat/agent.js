// crm-chat agent socket, shared by every CRM page of an agent with chat access.
// One WebSocket per tab; page scripts listen for "crm-chat:event" on document and
// send frames with window.crmAgent.send(). When the socket is down the sidebar
// badge (and page scripts, via "crm-chat:poll") fall back to polling.
(function () {
  "use strict";
  var el = document.getElementById("crm-agent");
  var badge = document.getElementById("nav-chat-unread");
  var ws = null, ready = false, fails = 0, pollTimer = null, pingTimer = null, latest = null;
  var agent = {
    ready: false,
    send: function (frame) {
      if (ready && ws && ws.readyState === 1) { ws.send(JSON.stringify(frame)); return true; }
      return false;
    },
  };
  window.crmAgent = agent;

  function emit(name, detail) { document.dispatchEvent(new CustomEvent(name, { detail: detail })); }
  function setBadge(n) { if (!badge) return; badge.textContent = n > 99 ? "99+" : n; badge.hidden = !n; }
  var unreadTimer = null;
  function refreshUnread() {
    clearTimeout(unreadTimer);
    unreadTimer = setTimeout(function () {
      fetch(el.dataset.unread, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (j) {
          if (!j) return;
          setBadge(j.unread);
          if (latest !== null && j.latest !== latest) emit("crm-chat:changed", {});
          latest = j.latest;
        }).catch(function () {});
    }, 250);
  }
  function poll() {
    // Socket down: keep the badge, the list and the open conversation fresh by polling.
    refreshUnread();
    emit("crm-chat:poll", {});
    pollTimer = setTimeout(poll, document.hidden ? 15000 : 4000);
  }
  function startPolling() { if (!pollTimer) poll(); }
  function stopPolling() { clearTimeout(pollTimer); pollTimer = null; }

  function connect() {
    if (!("WebSocket" in window)) { startPolling(); return; }
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + el.dataset.ws;
    try { ws = new WebSocket(url); } catch (e) { failed(); return; }
    ws.onmessage = function (e) {
      var ev; try { ev = JSON.parse(e.data); } catch (x) { return; }
      if (ev.type === "ready") {
        ready = agent.ready = true; fails = 0; stopPolling();
        document.documentElement.dataset.agentTransport = "ws";
        emit("crm-chat:ready", ev);
        clearInterval(pingTimer);
        pingTimer = setInterval(function () { agent.send({ type: "ping" }); }, 30000);
        refreshUnread();
        return;
      }
      // Pongs double as a freshness check: a missed event still shows up in the badge/list.
      if (ev.type === "message" || ev.type === "read" || ev.type === "status" || ev.type === "pong") refreshUnread();
      emit("crm-chat:event", ev);
    };
    ws.onclose = function () {
      var was = ready; ready = agent.ready = false; ws = null; clearInterval(pingTimer);
      if (!was) fails++;
      emit("crm-chat:down", {});
      failed();
    };
  }
  function failed() {
    document.documentElement.dataset.agentTransport = "poll";
    startPolling();
    setTimeout(connect, Math.min(30000, 1000 * Math.pow(2, Math.min(fails, 5))));
  }
  refreshUnread();
  connect();
})();
