// The live dashboard: charts (Chart.js), figures refreshed from /dashboard/figures/, and the
// live feed from /ws/dashboard/ (calls appear, transcripts grow, calls move to "ended").
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const labels = JSON.parse(document.getElementById("labels-data").textContent);
  const liveCalls = document.getElementById("live-calls");
  const endedCalls = document.getElementById("ended-calls");
  const statusBadge = document.getElementById("live-status");
  const charts = {};

  // Choosing a tenant shows its dashboard (no inline handler: the page's CSP forbids them).
  const tenantFilter = document.getElementById("tenant-filter");
  if (tenantFilter) {
    tenantFilter.addEventListener("change", function () { tenantFilter.form.submit(); });
  }

  // --- formatting, as the server-rendered page does -------------------------------------
  // A rate as a percentage with at most one decimal (the template filter `percent`).
  function percent(value) {
    return value === null || value === undefined ? "—" : (Math.round(value * 1000) / 10) + " %";
  }

  // "2026-12-03 18:00:41" in the server's time zone (Django's date:"Y-m-d H:i:s").
  const dateParts = new Intl.DateTimeFormat("en-GB", {
    timeZone: config.timeZone, hourCycle: "h23", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  function serverDate(iso) {
    const p = {};
    dateParts.formatToParts(new Date(iso)).forEach(function (part) { p[part.type] = part.value; });
    return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute + ":" + p.second;
  }

  function label(kind, value) {
    const names = labels[kind] || {};
    return Object.prototype.hasOwnProperty.call(names, value) ? names[value] : value;
  }

  // --- figures and charts -----------------------------------------------------------------
  function formatFigure(el, value) {
    if (value === null || value === undefined) {
      el.textContent = el.dataset.figure === "token_budget" ? "no limit" : "—";
      return;
    }
    const unit = el.dataset.unit;
    if (unit === "%") el.textContent = percent(value);
    else if (unit) el.textContent = value + " " + unit;
    else el.textContent = String(value);
  }

  // Over 7 and 30 days, calls per day: the hourly counts added up per local day (labels of
  // those periods are "03 Dec 18:00", in the period's time zone).
  function perDay(data) {
    if (config.period === "today") return { labels: data.labels, calls: data.calls };
    const days = { labels: [], calls: [] };
    data.labels.forEach(function (hour, i) {
      const day = hour.split(" ").slice(0, 2).join(" ");
      if (days.labels[days.labels.length - 1] !== day) {
        days.labels.push(day);
        days.calls.push(0);
      }
      days.calls[days.calls.length - 1] += data.calls[i];
    });
    return days;
  }

  function showFigures(figures) {
    document.querySelectorAll("[data-figure]").forEach(function (el) {
      formatFigure(el, figures[el.dataset.figure]);
    });
  }

  function drawCharts(data) {
    if (typeof Chart === "undefined") return;
    const common = { animation: false, maintainAspectRatio: false, responsive: true };
    if (!charts.calls) {
      charts.calls = new Chart(document.getElementById("calls-chart"), {
        type: "bar",
        data: { labels: [], datasets: [{ label: "Calls", data: [], backgroundColor: "#4e79a7" }] },
        options: Object.assign({ scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }, common),
      });
      charts.latency = new Chart(document.getElementById("latency-chart"), {
        type: "line",
        data: {
          labels: [],
          datasets: [
            { label: "LLM first token p50", data: [], borderColor: "#f28e2b", spanGaps: true },
            { label: "Whole turn p50", data: [], borderColor: "#59a14f", spanGaps: true },
            { label: "Whole turn p90", data: [], borderColor: "#e15759", spanGaps: true },
          ],
        },
        options: Object.assign({ scales: { y: { beginAtZero: true } } }, common),
      });
    }
    const calls = perDay(data);
    charts.calls.data.labels = calls.labels;
    charts.calls.data.datasets[0].data = calls.calls;
    charts.latency.data.labels = data.labels;
    charts.latency.data.datasets[0].data = data.first_token_p50;
    charts.latency.data.datasets[1].data = data.turn_p50;
    charts.latency.data.datasets[2].data = data.turn_p90;
    charts.calls.update();
    charts.latency.update();
    document.querySelectorAll(".charts canvas").forEach(function (c) { c.dataset.rendered = "true"; });
  }

  function dash(value) { return value === null || value === undefined ? "—" : String(value); }

  function showAssistants(rows) {
    const table = document.getElementById("assistants");
    const withTenant = table.querySelectorAll("thead th").length === 14;
    const body = table.querySelector("tbody");
    body.replaceChildren();
    rows.forEach(function (a) {
      const cells = [a.name].concat(withTenant ? [a.tenant] : []).concat([
        a.model, (a.modes || []).join(", ") || "—", a.calls, a.answered, dash(a.avg_duration),
        dash(a.turns_per_call), dash(a.first_token_p50) + " / " + dash(a.first_token_p90),
        dash(a.turn_p50) + " / " + dash(a.turn_p90),
        percent(a.fallback_rate), percent(a.error_rate), percent(a.cache_hit_rate), a.tokens,
      ]);
      const tr = document.createElement("tr");
      cells.forEach(function (value) {
        const td = document.createElement("td");
        td.textContent = String(value);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 14;
      td.className = "empty";
      td.textContent = "No calls in this period.";
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }

  function show(report, initial) {
    showFigures(report.figures);
    drawCharts(report.charts);
    if (!initial) showAssistants(report.assistants);
  }

  function refresh() {
    const params = new URLSearchParams({ period: config.period });
    if (config.tenant) params.set("tenant", config.tenant);
    fetch(config.figuresUrl + "?" + params.toString(), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (report) { if (report) show(report); })
      .catch(function () {});
  }

  // After a burst of events: refresh soon, and once more when the server's cached figures
  // (kept cacheSeconds) have expired, so the last event of a burst is always counted.
  // (a stale report is recomputed in the background: the second follow-up picks it up).
  let timers = [];
  function refreshSoon() {
    timers.forEach(clearTimeout);
    const later = (config.cacheSeconds + 1) * 1000;
    timers = [800, 800 + later, 800 + 2 * later + 5000].map(function (ms) {
      return setTimeout(refresh, ms);
    });
  }

  // --- live calls -------------------------------------------------------------------------
  function callCard(id, data) {
    let card = liveCalls.querySelector('[data-call="' + CSS.escape(id) + '"]');
    if (card) return card;
    const template = document.getElementById("call-template");
    card = template.content.firstElementChild.cloneNode(true);
    card.dataset.call = id;
    card.dataset.started = (data && data.at) || new Date().toISOString();
    card.querySelector(".details").href = config.callUrl.replace("00000000-0000-0000-0000-000000000000", id);
    liveCalls.appendChild(card);
    updateLiveCount();
    return card;
  }

  function fillHeader(card, data) {
    if (data.to_number) card.querySelector(".to").textContent = data.to_number;
    if (data.from_number !== undefined) card.querySelector(".from").textContent = data.from_number;
    if (data.assistant) card.querySelector(".assistant").textContent = data.assistant;
    if (data.mode) card.querySelector(".mode").textContent = data.mode;
  }

  function updateLiveCount() {
    const n = liveCalls.querySelectorAll(".live-call").length;
    document.getElementById("live-count").textContent = String(n);
    document.getElementById("live-empty").hidden = n > 0;
  }

  function roleLabel(role) { return role === "caller" ? "Caller" : "Assistant"; }

  function addTurn(card, turn) {
    const transcript = card.querySelector(".transcript");
    const partial = transcript.querySelector(".partial." + (turn.role === "caller" ? "caller" : "assistant"));
    if (partial) partial.remove();
    if (transcript.querySelector('[data-sequence="' + turn.sequence + '"]')) return;
    const li = document.createElement("li");
    li.className = "turn " + (turn.role === "caller" ? "caller" : "assistant");
    li.dataset.sequence = turn.sequence;
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = roleLabel(turn.role);
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = turn.interrupted ? turn.heard_text : turn.text;
    li.append(role, " ", text);
    if (turn.tool_calls && turn.tool_calls.length) li.append(" ", toolsLine(turn.tool_calls));
    if (turn.response_sent_ms !== null && turn.response_sent_ms !== undefined) {
      const ms = document.createElement("span");
      ms.className = "ms";
      ms.textContent = turn.response_sent_ms + " ms";
      li.append(" ", ms);
    }
    // A partial line stays last: the finished turn goes before it.
    const stillPartial = transcript.querySelector(".partial");
    transcript.insertBefore(li, stillPartial);
  }

  // The tools a turn ran: "tools: book_appointment ok 120 ms, check_stock timeout 1000 ms".
  function toolsLine(calls) {
    const span = document.createElement("span");
    span.className = "tools muted";
    span.textContent = "tools: " + calls.map(function (call) {
      return call.name + " " + call.status + " " + call.ms + " ms";
    }).join(", ");
    return span;
  }

  // The conversation switched language: a line in the transcript, where it happened.
  function showLanguage(card, data) {
    const transcript = card.querySelector(".transcript");
    const li = document.createElement("li");
    li.className = "turn language-switch";
    li.textContent = "Language: " + (data.previous ? data.previous + " → " : "") + data.language;
    transcript.insertBefore(li, transcript.querySelector(".partial"));
  }

  // The words so far of a turn still under way: the assistant's as they stream, or (stream
  // mode) the caller's as the recognition provider hears them.
  function showPartial(card, text, who) {
    const transcript = card.querySelector(".transcript");
    let li = transcript.querySelector(".partial." + who);
    if (!li) {
      li = document.createElement("li");
      li.className = "turn " + who + " partial";
      const role = document.createElement("span");
      role.className = "role";
      role.textContent = roleLabel(who);
      const span = document.createElement("span");
      span.className = "text";
      li.append(role, " ", span);
      transcript.appendChild(li);
    }
    li.querySelector(".text").textContent = text;
  }

  function endCall(id, event) {
    const card = liveCalls.querySelector('[data-call="' + CSS.escape(id) + '"]');
    const data = event.data || {};
    const row = document.createElement("tr");
    row.dataset.call = id;
    const cells = [
      serverDate(card ? card.dataset.started : event.at),
      card ? card.querySelector(".to").textContent : (data.to_number || ""),
      card ? card.querySelector(".from").textContent : (data.from_number || ""),
      card ? card.querySelector(".assistant").textContent : "",
      card ? card.querySelector(".mode").textContent : "",
      label("status", data.status || event.event),
      label("outcome", data.outcome || ""),
      data.duration !== undefined && data.duration !== null ? data.duration + " s" : "—",
    ];
    cells.forEach(function (value, i) {
      const td = document.createElement("td");
      td.textContent = value;
      if (i === 5) td.className = "status";
      row.appendChild(td);
    });
    const link = document.createElement("a");
    link.href = config.callUrl.replace("00000000-0000-0000-0000-000000000000", id);
    link.textContent = "details";
    const td = document.createElement("td");
    td.appendChild(link);
    row.appendChild(td);
    const old = endedCalls.querySelector('[data-call="' + CSS.escape(id) + '"]');
    if (old) old.remove();
    endedCalls.insertBefore(row, endedCalls.firstChild);
    if (card) {
      card.classList.remove("live-call");
      card.classList.add("ended");
      card.querySelector(".status").textContent = "ended";
      setTimeout(function () { card.remove(); updateLiveCount(); }, 5000);
    }
    updateLiveCount();
  }

  function handle(event) {
    if (!event.call) return;
    const data = event.data || {};
    switch (event.event) {
      case "started":
        fillHeader(callCard(event.call, event), data);
        refreshSoon();
        break;
      case "turn":
        if (data.turn) addTurn(callCard(event.call, event), data.turn);
        refreshSoon();
        break;
      case "partial":
        if (typeof data.text === "string") {
          showPartial(callCard(event.call, event), data.text, data.role === "caller" ? "caller" : "assistant");
        }
        break;
      case "language":
        if (typeof data.language === "string") showLanguage(callCard(event.call, event), data);
        break;
      case "ended":
      case "rejected":
        endCall(event.call, event);
        refreshSoon();
        break;
    }
  }

  function tick() {
    const now = Date.now();
    liveCalls.querySelectorAll(".live-call").forEach(function (card) {
      const seconds = Math.max(0, Math.floor((now - Date.parse(card.dataset.started)) / 1000));
      const m = Math.floor(seconds / 60), s = seconds % 60;
      card.querySelector(".duration").textContent = m + ":" + (s < 10 ? "0" : "") + s;
    });
  }

  let retry = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const query = config.tenant ? "?tenant=" + encodeURIComponent(config.tenant) : "";
    const socket = new WebSocket(scheme + location.host + "/ws/dashboard/" + query);
    socket.onopen = function () {
      retry = 500;
      statusBadge.dataset.state = "live";
      statusBadge.textContent = "live";
    };
    socket.onmessage = function (message) {
      try { handle(JSON.parse(message.data)); } catch (e) { /* a bad frame is skipped */ }
    };
    socket.onclose = function (event) {
      statusBadge.dataset.state = "offline";
      if (event.code === 4403) {  // signed out, or no longer allowed to watch: no retry
        statusBadge.textContent = "access ended — reload the page";
        return;
      }
      statusBadge.textContent = "reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }

  show(JSON.parse(document.getElementById("report-data").textContent), true);
  tick();
  setInterval(tick, 1000);
  connect();
})();
