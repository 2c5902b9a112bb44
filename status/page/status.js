// Palleto's status page: refreshes what the server rendered from /status.json every 2 seconds.
// No framework, no build step; every text goes through textContent (object keys hold anything).
"use strict";
(function () {
  const every = 2000;
  const $ = (sel) => document.querySelector(sel);

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }

  function bytes(n) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let f = n, i = 0;
    while (f >= 1000 && i < units.length - 1) { f /= 1000; i++; }
    return i === 0 ? n + " B" : f.toFixed(1) + " " + units[i];
  }

  function duration(secs) {
    const s = Math.max(0, Math.round(secs));
    const p = (n) => String(n).padStart(2, "0");
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + p(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + p(Math.floor(s % 3600 / 60)) + "m";
    return Math.floor(s / 86400) + "d" + p(Math.floor(s % 86400 / 3600)) + "h";
  }

  const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
  const since = (t, now) => duration((now - new Date(t).getTime()) / 1000);
  const badge = (cls, text) => el("span", { class: "badge " + cls }, text);
  const orUnknown = (v, f) => (v === null || v === undefined ? "?" : f(v));

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
    const empty = tbody.closest("section").querySelector(".empty");
    if (empty) empty.hidden = rows.length > 0;
  }

  function render(s) {
    const now = Date.now();
    const down = s.dependencies.filter((d) => !d.up);
    const health = $("#health");
    health.textContent = down.length ? "degraded" : "working";
    health.className = "badge " + (down.length ? "down" : "ok");
    $("#source").textContent = s.source;
    $("#store").textContent = s.store;
    $("#version").textContent = s.version + " · inflate=" + s.inflate;
    $("#uptime").textContent = duration(s.uptime_seconds);
    for (const [k, v] of Object.entries(s.counts)) {
      const b = document.querySelector('#counts [data-count="' + k + '"] b');
      if (b) b.textContent = v;
    }
    $("#rate-objects").textContent = s.rate.objects_per_second.toFixed(1);
    $("#rate-bytes").textContent = (s.rate.bytes_per_second / 1e6).toFixed(1);
    $("#queue-visible").textContent = orUnknown(s.queue.visible, String);
    $("#queue-in-flight").textContent = orUnknown(s.queue.in_flight, String);
    $("#queue-oldest").textContent = orUnknown(s.queue.oldest_age_seconds, duration);

    fill($("#dependencies tbody"), s.dependencies.map((d) =>
      el("tr", { "data-name": d.name, "data-up": String(d.up) },
        el("td", {}, d.name),
        el("td", {}, d.up ? badge("ok", "up") : badge("down", "DOWN")),
        el("td", { title: d.since }, clock(d.since) + " (" + since(d.since, now) + ")"),
        el("td", { class: "reason" }, d.up ? "" : d.name + " unreachable since " + clock(d.since) + ": " + d.reason))));

    $("#in-flight-count").textContent = s.in_flight.length;
    fill($("#in-flight tbody"), s.in_flight.map((o) => {
      const pct = o.size > 0 ? Math.min(100, Math.floor(100 * o.bytes_read / o.size)) : 0;
      return el("tr", { "data-bucket": o.bucket, "data-key": o.key, "data-worker": o.worker, "data-bytes-read": o.bytes_read, "data-size": o.size },
        el("td", {}, o.worker),
        el("td", { class: "object" }, o.bucket + "/" + o.key),
        el("td", {}, el("progress", { max: 100, value: pct })),
        el("td", { class: "num" }, bytes(o.bytes_read) + " of " + (o.size > 0 ? bytes(o.size) : "?")),
        el("td", { class: "num" }, since(o.started_at, now)));
    }));

    fill($("#failures tbody"), s.failures.map((f) =>
      el("tr", { "data-key": f.key, "data-class": f.class },
        el("td", { title: f.at }, clock(f.at)),
        el("td", { class: "object" }, f.bucket || f.key ? f.bucket + "/" + f.key : "(the message)"),
        el("td", {}, f.class === "unavailable" ? badge("warn", "world: " + f.class) : badge("down", "object: " + f.class)),
        el("td", { class: "reason" }, f.error),
        el("td", {}, f.action))));

    chart(s.history);
  }

  // chart draws the history: bars of objects/s, a line of MB/s, each on its own scale.
  function chart(points) {
    const svg = $("#chart");
    const ns = "http://www.w3.org/2000/svg";
    const W = 600, H = 140, slots = 90;
    const mk = (tag, attrs) => {
      const e = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      return e;
    };
    let step = 10;
    if (points.length > 1) step = (new Date(points[1].at) - new Date(points[0].at)) / 1000 || 10;
    const ops = points.map((p) => p.objects / step);
    const mbs = points.map((p) => p.bytes / step / 1e6);
    const maxOps = Math.max(1e-9, ...ops), maxMBs = Math.max(1e-9, ...mbs);
    const w = W / slots, x0 = W - points.length * w;
    const kids = [mk("line", { x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5, class: "axis" })];
    ops.forEach((v, i) => {
      const h = (v / maxOps) * (H - 10);
      kids.push(mk("rect", { x: x0 + i * w + 0.5, y: H - h, width: Math.max(w - 1, 1), height: h, class: "objects" }));
    });
    if (mbs.length > 1) {
      const pts = mbs.map((v, i) => (x0 + i * w + w / 2).toFixed(1) + "," + (H - (v / maxMBs) * (H - 10)).toFixed(1));
      kids.push(mk("polyline", { points: pts.join(" "), class: "bytes" }));
    }
    svg.replaceChildren(...kids);
    $("#chart-max").textContent = points.length
      ? "(top: " + maxOps.toFixed(1) + " objects/s, " + maxMBs.toFixed(1) + " MB/s)"
      : "(the first point comes after 10 s)";
  }

  let lastOK = null;
  async function refresh() {
    try {
      const r = await fetch("/status.json", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      render(await r.json());
      lastOK = new Date();
      $("#stale").hidden = true;
    } catch (e) {
      if (lastOK) $("#stale-at").textContent = lastOK.toLocaleTimeString([], { hour12: false });
      $("#stale").hidden = false;
    }
    setTimeout(refresh, every);
  }
  refresh();
})();
