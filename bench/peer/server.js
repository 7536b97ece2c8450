// The peer that chatroom-bench measures chatroom against: what someone would deploy with plain
// socket.io 4.8 for a chat room and nothing else. No accounts, no storage.
//
//   PORT=38917 node server.js
//
// - A client joins the room named by its handshake query (`?room=room3`; `lobby` without one).
// - Every `chat` event is sent on, unchanged, to the other sockets of that room.
// - `GET /health` answers 200 once the server listens.
// - Once a second, one JSON line on stdout: sockets, memory, CPU and event-loop use, events relayed.
//
// Engine.IO 3 clients (socket.io-client 1.x/2.x) are accepted too, so both protocol generations can
// be measured against the same peer.
"use strict";

const http = require("node:http");
const { performance } = require("node:perf_hooks");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 38917);
const host = process.env.HOST || "127.0.0.1";
const every = Number(process.env.STATS_MS || 1000);

const web = http.createServer((req, res) => {
  res.writeHead(req.url === "/health" ? 200 : 404, { "content-type": "text/plain" });
  res.end(req.url === "/health" ? "ok" : "");
});

const io = new Server(web, { serveClient: false, allowEIO3: true });

const counters = { chats: 0, relayed: 0 };

io.on("connection", (socket) => {
  const wanted = socket.handshake.query.room;
  const room = typeof wanted === "string" && wanted !== "" ? wanted : "lobby";
  socket.join(room);
  socket.on("chat", (payload) => {
    counters.chats += 1;
    const members = io.sockets.adapter.rooms.get(room);
    counters.relayed += members ? members.size - 1 : 0;
    socket.to(room).emit("chat", payload);
  });
});

let cpuBefore = process.cpuUsage();
let loopBefore = performance.eventLoopUtilization();
let at = performance.now();
setInterval(() => {
  const now = performance.now();
  const seconds = (now - at) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const loop = performance.eventLoopUtilization(loopBefore);
  const mem = process.memoryUsage();
  const line = {
    t: Date.now(),
    sockets: io.engine.clientsCount,
    rssMB: +(mem.rss / 1048576).toFixed(1),
    heapMB: +(mem.heapUsed / 1048576).toFixed(1),
    cpuCores: +((cpu.user + cpu.system) / 1e6 / seconds).toFixed(3),
    loopBusy: +loop.utilization.toFixed(3),
    chats: counters.chats,
    relayed: counters.relayed,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
  cpuBefore = process.cpuUsage();
  loopBefore = performance.eventLoopUtilization();
  at = now;
}, every).unref();

const stop = () => {
  io.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

web.listen(port, host, () => {
  const version = require("socket.io/package.json").version;
  process.stderr.write(`bench peer: socket.io ${version}, node ${process.version}, ${host}:${port}\n`);
});
