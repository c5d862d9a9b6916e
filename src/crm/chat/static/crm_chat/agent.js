// crm-chat agent socket, shared by every CRM page of an agent with chat access.
// One WebSocket per tab; page scripts listen for "crm-chat:event" on document and
// send frames with window.crmAgent.send(). When the socket is down the sidebar
// badge (and page scripts, via "crm-chat:poll") fall back to polling. Reconnecting
// with backoff and the polling schedule are the shared stream client's (stream.js).
(function () {
  "use strict";
  var el = document.getElementById("crm-agent");
  var badge = document.getElementById("nav-chat-unread");
  var latest = null;

  // Alerts while the tab is hidden: a short sound and/or a desktop notification, as
  // the agent chose on the inbox page (kept per browser). Notifications show text only.
  var PREFS = "crm-chat:alerts", audio = null, lastUnread = null;
  function prefs() { try { return JSON.parse(localStorage.getItem(PREFS)) || {}; } catch (e) { return {}; } }
  function savePrefs(p) { try { localStorage.setItem(PREFS, JSON.stringify(p)); } catch (e) {} }
  function beep() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try {
      audio = audio || new Ctx();
      var t = audio.currentTime, osc = audio.createOscillator(), gain = audio.createGain();
      osc.frequency.setValueAtTime(880, t);
      osc.frequency.setValueAtTime(660, t + 0.12);
      gain.gain.setValueAtTime(0.15, t);
      gain.gain.exponentialRampToValueAtTime(0.001, t + 0.3);
      osc.connect(gain); gain.connect(audio.destination);
      osc.start(t); osc.stop(t + 0.3);
    } catch (e) {}
  }
  function alertAgent(title, body, conv) {
    if (!document.hidden) return;
    var p = prefs();
    if (p.sound) beep();
    if (!p.desktop || !("Notification" in window) || Notification.permission !== "granted") return;
    try {
      var n = new Notification(title, { body: String(body).slice(0, 140), tag: "crm-chat:" + (conv || "unread") });
      n.onclick = function () {
        window.focus();
        if (conv) location.href = el.dataset.chat + conv + "/";
        n.close();
      };
    } catch (e) {}
  }
  function bindAlertControls() {
    var sound = document.getElementById("alert-sound"), desktop = document.getElementById("alert-desktop");
    var note = document.getElementById("alert-note");
    if (!sound || !desktop) return;
    var p = prefs();
    sound.checked = !!p.sound;
    desktop.checked = !!p.desktop && "Notification" in window && Notification.permission === "granted";
    sound.addEventListener("change", function () { var q = prefs(); q.sound = sound.checked; savePrefs(q); if (sound.checked) beep(); });
    desktop.addEventListener("change", function () {
      var q = prefs();
      note.textContent = "";
      if (!desktop.checked) { q.desktop = false; savePrefs(q); return; }
      if (!("Notification" in window)) { desktop.checked = false; note.textContent = "This browser can't show notifications."; return; }
      Promise.resolve(Notification.permission === "granted" ? "granted" : Notification.requestPermission()).then(function (answer) {
        var ok = answer === "granted";
        desktop.checked = ok; q.desktop = ok; savePrefs(q);
        if (!ok) note.textContent = "Notifications are blocked for this site in your browser settings.";
      });
    });
  }

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
          // Without the socket, a growing unread count is the only sign of new messages.
          if (!link.ready && lastUnread !== null && j.unread > lastUnread) alertAgent("New chat messages", j.unread + " unread", null);
          lastUnread = j.unread;
          if (latest !== null && j.latest !== latest) emit("crm-chat:changed", {});
          latest = j.latest;
        }).catch(function () {});
    }, 250);
  }
  function poll() {
    // Socket down: keep the badge, the list and the open conversation fresh by polling.
    refreshUnread();
    emit("crm-chat:poll", {});
    link.poll(document.hidden ? 15000 : 4000);
  }

  // window.crmAgent: { ready, send(frame) -> bool } for the page scripts.
  var link = window.crmAgent = crmStream.socket({
    path: el.dataset.ws, ping: 30000, poll: poll,
    frame: function (ev) {
      if (ev.type === "ready") {
        document.documentElement.dataset.agentTransport = "ws";
        emit("crm-chat:ready", ev);
        refreshUnread();
        return;
      }
      // Pongs double as a freshness check: a missed event still shows up in the badge/list.
      if (ev.type === "message" || ev.type === "read" || ev.type === "status" || ev.type === "pong") refreshUnread();
      if (ev.type === "message" && ev.message && ev.message.sender_type === "visitor") {
        alertAgent(ev.message.sender_name, ev.message.body, ev.conversation);
      }
      emit("crm-chat:event", ev);
    },
    down: function (code) {
      emit("crm-chat:down", {});
      // Session ended or chat access lost: the page reloads into the login or the refusal.
      if (code === 4401 || code === 4403) { location.reload(); return false; }
      document.documentElement.dataset.agentTransport = "poll";
    },
  });
  bindAlertControls();
  refreshUnread();
  link.start();
})();
