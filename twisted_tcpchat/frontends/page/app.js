// tcpchat's page: a WebSocket client of the chat (docs/websocket.md).
// Every piece of text from the server goes into the page with textContent,
// never as markup: what someone typed is shown as they typed it.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const LOG_LIMIT = 500; // entries kept per room
  const HISTORY_LIMIT = 100; // input lines kept for up/down

  const state = {
    ws: null,
    name: "",
    room: "",
    operator: false,
    loggedIn: false,
    credentials: null, // [name, password] while this page is open, to log in again
    rooms: new Map(), // lower-case name -> {name, members, topic, seq}
    seen: new Map(), // lower-case room -> the last seq shown or listed (for unread counts)
    shown: new Map(), // lower-case room -> Set of "at|sender|text" shown (history is not shown twice)
    left: "", // the room just left: its count is taken from the next room list
    logs: new Map(), // lower-case room -> [li, ...]
    members: new Map(), // name -> {name, operator}
    privates: new Map(), // lower-case name -> {name, unread}
    quiet: { members: 0, rooms: 0 }, // answers the page asked for itself
    typed: [],
    own: [], // lines we said and showed, in case the server echoes them
    typedAt: 0,
    retry: 0, // reconnections since the last welcome
    retryTimer: null,
    wantName: "", // the name to take again after a reconnect
    names: new Set(), // every name this page has had: its lines in history are its own
    loginSent: false, // a /login went out on this connection, not yet answered
    nameTries: 0,
    hiddenUnread: 0,
  };

  // ---- drawing ------------------------------------------------------------

  function hue(name) {
    let h = 0;
    for (const c of name.toLowerCase()) h = (h * 31 + c.codePointAt(0)) % 360;
    return h;
  }

  function clock(at) {
    const d = at ? new Date(at * 1000) : new Date();
    return [d.getHours(), d.getMinutes()].map((n) => String(n).padStart(2, "0")).join(":");
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function mentions(text) {
    if (!state.name) return false;
    const escaped = state.name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp("(^|[^\\w])" + escaped + "($|[^\\w])", "i").test(text);
  }

  // One conversation entry: time, who, text.  kind: "", "dim", "error", "private".
  function entry(room, { at, who, text, kind = "", history = false }) {
    const li = el("li", kind);
    if (history) li.classList.add("history");
    const when = el("time", "time", clock(at));
    if (at) when.title = new Date(at * 1000).toLocaleString();
    li.append(when);
    const whoNode = el("span", "who", who || "");
    if (who && (kind === "" || kind === "action" || kind === "private")) whoNode.style.setProperty("--hue", hue(who));
    li.append(whoNode, el("span", "text", text));
    if ((kind === "" || kind === "action") && who && who !== state.name && mentions(text)) {
      li.classList.add("mention");
    }
    append(room, li);
    return li;
  }

  function logOf(room) {
    const key = (room || "").toLowerCase();
    if (!state.logs.has(key)) state.logs.set(key, []);
    return state.logs.get(key);
  }

  function append(room, li) {
    const key = (room || state.room || "").toLowerCase();
    const entries = logOf(key);
    entries.push(li);
    const log = $("log");
    const shown = key === state.room.toLowerCase() || !state.room;
    if (entries.length > LOG_LIMIT) {
      const gone = entries.shift();
      if (shown && gone.parentNode === log) gone.remove();
    }
    if (shown) {
      const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
      log.append(li);
      if (atBottom || li.classList.contains("mine")) log.scrollTop = log.scrollHeight;
    }
    if (document.hidden) {
      state.hiddenUnread += 1;
      title();
    }
  }

  function server(text, kind = "dim") {
    return entry(state.room, { who: "", text, kind });
  }

  function showRoomLog() {
    const log = $("log");
    log.replaceChildren(...logOf(state.room));
    log.scrollTop = log.scrollHeight;
  }

  function title() {
    const unread = state.hiddenUnread ? `(${state.hiddenUnread}) ` : "";
    document.title = unread + (state.room ? `#${state.room} — tcpchat` : "tcpchat");
  }

  function drawHeader() {
    $("room-title").textContent = state.room ? `#${state.room}` : "tcpchat";
    const room = state.rooms.get(state.room.toLowerCase());
    $("topic").textContent = room && room.topic ? room.topic : "";
    $("topic").title = $("topic").textContent;
    $("me").textContent = state.name;
    $("me").title = state.operator ? "You (operator). Click to change your name" : "Click to change your name";
    title();
  }

  function drawRooms() {
    const list = $("rooms");
    const current = state.room.toLowerCase();
    const items = [...state.rooms.values()].sort((a, b) => a.name.localeCompare(b.name));
    list.replaceChildren(
      ...items.map((room) => {
        const key = room.name.toLowerCase();
        const button = el("button");
        button.type = "button";
        button.dataset.room = room.name;
        if (key === current) button.setAttribute("aria-current", "true");
        button.append(el("span", "label", `#${room.name}`), el("span", "count", String(room.members)));
        const seen = state.seen.get(key);
        const unread = key === current || seen === undefined ? 0 : Math.max(0, room.seq - seen);
        if (unread) button.append(el("span", "unread", String(unread)));
        button.title = room.topic || `#${room.name}`;
        button.addEventListener("click", () => {
          closeDrawer();
          if (key !== current) send(`/join ${room.name}`);
        });
        const li = el("li");
        li.append(button);
        return li;
      })
    );
  }

  function drawMembers() {
    const list = $("members");
    const names = [...state.members.values()].sort((a, b) => a.name.localeCompare(b.name));
    $("members-title").textContent = `Members (${names.length})`;
    list.replaceChildren(
      ...names.map((m) => {
        const li = el("li");
        const who = el("span", "who", m.name);
        who.style.color = `hsl(${hue(m.name)} 65% var(--name-l))`;
        li.append(who);
        if (m.operator) li.append(el("span", "op", "operator"));
        return li;
      })
    );
    const room = state.rooms.get(state.room.toLowerCase());
    if (room) {
      room.members = names.length;
      drawRooms();
    }
  }

  function drawPrivates() {
    const list = $("privates");
    $("privates-section").hidden = state.privates.size === 0;
    list.replaceChildren(
      ...[...state.privates.values()].map((p) => {
        const button = el("button");
        button.type = "button";
        button.append(el("span", "label", p.name));
        if (p.unread) button.append(el("span", "unread", String(p.unread)));
        button.title = `Write to ${p.name} privately`;
        button.addEventListener("click", () => {
          p.unread = 0;
          drawPrivates();
          closeDrawer();
          const say = $("say");
          say.value = `/msg ${p.name} `;
          say.focus();
        });
        const li = el("li");
        li.append(button);
        return li;
      })
    );
  }

  function setStatus(stateName, text) {
    const status = $("status");
    status.dataset.state = stateName;
    status.textContent = text;
  }

  // ---- events from the server (docs/websocket.md) ---------------------------

  const on = {
    text(e) {
      server(e.text, "");
    },
    you(e) {
      const oldName = state.name;
      state.name = e.name;
      state.names.add(e.name);
      state.loginSent = false;
      state.operator = !!e.operator;
      if (e.change === "welcome" || e.change === "moved") {
        const first = e.change === "welcome";
        const wasIn = state.room;
        state.room = e.room;
        if (first) {
          $("login-form").hidden = true;
          $("say-form").hidden = false;
          state.loggedIn = true;
          state.retry = 0;
          // Numbers may have started again (a restarted server): unread
          // counts start afresh; what was shown stays known by its content.
          state.seen.clear();
          // Back after a reconnect: take our name again, and go where we were.
          if (oldName && oldName !== e.name && !state.credentials) {
            state.wantName = oldName;
            state.nameTries = 0;
            send(`/nick ${oldName}`);
          }
          if (wasIn && wasIn.toLowerCase() !== e.room.toLowerCase()) send(`/join ${wasIn}`);
        } else if (wasIn) {
          state.left = wasIn.toLowerCase();
        }
        if (first) {
          // The greeting came before we had a room: it belongs to this one.
          const before = state.logs.get("") || [];
          state.logs.delete("");
          logOf(e.room).unshift(...before);
        }
        state.members.clear();
        drawMembers();
        showRoomLog();
        if (!state.rooms.has(e.room.toLowerCase())) {
          state.rooms.set(e.room.toLowerCase(), { name: e.room, members: 1, topic: "", seq: 0 });
        }
        askQuietly("/who", "members");
        askQuietly("/rooms", "rooms");
        if (!first) server(`you are now in #${e.room}`);
        else server(`you are ${e.name}; /help lists the commands`);
      } else if (e.change === "renamed") {
        state.wantName = "";
        const me = state.members.get(oldName);
        state.members.delete(oldName);
        state.members.set(e.name, { name: e.name, operator: me ? me.operator : state.operator });
        drawMembers();
        server(`you are now ${e.name}`);
      } else {
        server(`you are already ${e.name}`);
      }
      drawHeader();
      drawRooms();
    },
    history(e) {
      for (const said of e.entries) said_(said, true);
    },
    message(e) {
      said_(e, false);
    },
    action(e) {
      said_(e, false);
    },
    private(e) {
      const other = e.echo ? e.recipient : e.sender;
      const who = e.echo ? `you → ${e.recipient}` : `${e.sender} → you`;
      entry(state.room, { at: e.at, who, text: e.text, kind: "private" });
      const key = other.toLowerCase();
      const p = state.privates.get(key) || { name: other, unread: 0 };
      if (!e.echo) p.unread += 1;
      state.privates.set(key, p);
      drawPrivates();
    },
    presence(e) {
      const text = {
        joined: `${e.name} joined`,
        left: `${e.name} left (${e.reason})`,
        "moved-out": `${e.name} left for #${e.other}`,
        "moved-in": `${e.name} came from #${e.other}`,
        renamed: `${e.name} is now known as ${e.other}`,
      }[e.change] || `${e.name} ${e.change}`;
      entry(e.room, { who: "", text, kind: "dim" });
      if (e.room.toLowerCase() !== state.room.toLowerCase()) return;
      if (e.change === "joined" || e.change === "moved-in") {
        state.members.set(e.name, { name: e.name, operator: false });
      } else if (e.change === "renamed") {
        const m = state.members.get(e.name) || { operator: false };
        state.members.delete(e.name);
        state.members.set(e.other, { name: e.other, operator: m.operator });
      } else {
        state.members.delete(e.name);
      }
      drawMembers();
    },
    topic(e) {
      const key = e.room.toLowerCase();
      const room = state.rooms.get(key) || { name: e.room, members: 0, seq: 0 };
      room.topic = e.text;
      state.rooms.set(key, room);
      let text;
      if (e.by === null || e.by === undefined) {
        text = e.text ? `the topic of #${e.room}: ${e.text}` : `#${e.room} has no topic; /topic TEXT sets one`;
      } else {
        text = e.text ? `${e.by} set the topic: ${e.text}` : `${e.by} cleared the topic`;
      }
      entry(e.room, { who: "", text, kind: "dim" });
      drawHeader();
    },
    members(e) {
      const quiet = state.quiet.members > 0 && e.room !== null;
      if (quiet) state.quiet.members -= 1;
      if (e.room !== null && e.room.toLowerCase() === state.room.toLowerCase()) {
        state.members.clear();
        for (const m of e.members) state.members.set(m.name, { name: m.name, operator: m.operator });
        drawMembers();
      }
      if (quiet) return;
      const head = e.room === null ? `${e.members.length} online:` : `${e.members.length} in #${e.room}:`;
      server(head);
      for (const m of e.members) {
        const where = e.room === null ? ` in #${m.room}` : "";
        server(`  ${m.name}${where} (idle ${idle(m.idle)}${m.operator ? ", operator" : ""})`);
      }
    },
    whois(e) {
      const m = e.member;
      server(`${m.name} is in #${m.room} (idle ${idle(m.idle)}${m.operator ? ", operator" : ""})`);
    },
    rooms(e) {
      state.rooms.clear();
      for (const r of e.rooms) state.rooms.set(r.name.toLowerCase(), r);
      for (const r of e.rooms) {
        const key = r.name.toLowerCase();
        // A room first listed, or just left (our own lines, never sent back,
        // are not unread), counts from here; numbers that went down mean
        // the room was made anew.
        if (!state.seen.has(key) || key === state.left || r.seq < state.seen.get(key)) {
          state.seen.set(key, r.seq);
        }
      }
      state.left = "";
      drawRooms();
      drawHeader();
      if (state.quiet.rooms > 0) {
        state.quiet.rooms -= 1;
        return;
      }
      server(`${e.rooms.length} ${e.rooms.length === 1 ? "room" : "rooms"}:`);
      for (const r of e.rooms) server(`  #${r.name} (${r.members})${r.topic ? ": " + r.topic : ""}`);
    },
    help(e) {
      server("commands:");
      for (const c of e.commands) server(`  ${c.usage} — ${c.text}`);
      server("  //TEXT — say a line that starts with /");
    },
    notice(e) {
      entry(e.room || state.room, { who: e.sender || "", text: e.text, kind: "dim" });
      if (!state.loggedIn && /\/login/.test(e.text)) needLogin();
    },
    error(e) {
      entry(state.room, { who: "error", text: e.text, kind: "error" });
      if (!state.loggedIn && state.loginSent) {
        // The login we sent did not work (wrong now, or the name still held
        // by our old connection): ask the person.
        state.loginSent = false;
        state.credentials = null;
        needLogin();
      } else if (state.wantName && /is taken/.test(e.text) && state.nameTries < 6) {
        // Our old connection may still hold it until the server notices it is gone.
        state.nameTries += 1;
        setTimeout(() => state.wantName && send(`/nick ${state.wantName}`), 10000);
      }
    },
  };

  function said_(e, history) {
    const key = e.room.toLowerCase();
    if (!state.shown.has(key)) state.shown.set(key, new Set());
    const shown = state.shown.get(key);
    const id = `${e.at}|${e.sender}|${e.type === "action" ? e.text : e.lines.join("\n")}`;
    if (shown.has(id)) return; // (history we showed before a reconnect or a room switch)
    shown.add(id);
    if (shown.size > 2 * LOG_LIMIT) shown.delete(shown.values().next().value);
    if (e.seq > (state.seen.get(key) || 0)) state.seen.set(key, e.seq);
    const room = state.rooms.get(key);
    if (room && e.seq > room.seq) room.seq = e.seq;
    const mine = state.names.has(e.sender);
    // Our own lines were shown when we said them: not again when the server
    // echoes them (--echo), nor when they come back in a room's history.
    if (mine && ownEcho(e.type === "action" ? [e.text] : e.lines, history ? key : "")) return;
    if (e.type === "action") {
      entry(e.room, { at: e.at, who: e.sender, text: e.text, kind: "action", history });
    } else {
      for (const line of e.lines) {
        const li = entry(e.room, { at: e.at, who: e.sender, text: line, history });
        if (mine) li.classList.add("mine");
      }
    }
  }

  // What we said is shown when we say it; a server with --echo sends it
  // back, and that copy is not shown again.
  function showOwn(line) {
    let text = line;
    let kind = "";
    if (/^\/me\s/i.test(line)) {
      text = line.replace(/^\/me\s+/i, "").trim();
      kind = "action";
    } else if (line.startsWith("//")) {
      text = line.slice(1);
    } else if (line.startsWith("/")) {
      return;
    }
    for (const part of kind ? [text] : text.split("\n")) {
      state.own.push(part.trim());
      if (state.own.length > 50) state.own.shift();
      const li = entry(state.room, { who: state.name, text: part, kind });
      li.classList.add("mine");
    }
  }

  function ownEcho(lines, room) {
    const own = room ? logOf(room).filter((li) => li.classList.contains("mine")) : null;
    if (own) {
      const text = lines[0].trim();
      const li = own.find((node) => !node.dataset.matched && node.lastChild.textContent.trim() === text);
      if (!li) return false;
      li.dataset.matched = "yes";
      return true;
    }
    const at = state.own.indexOf(lines[0].trim());
    if (at < 0) return false;
    state.own.splice(at, lines.length);
    return true;
  }

  function idle(seconds) {
    if (seconds < 60) return `${Math.floor(seconds)}s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
    return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")}m`;
  }

  function needLogin() {
    if (state.credentials) {
      state.loginSent = send(`/login ${state.credentials[0]} ${state.credentials[1]}`);
      return;
    }
    $("login-form").hidden = false;
    $("say-form").hidden = true;
    $("login-name").focus();
  }

  // ---- the connection -----------------------------------------------------

  function send(text) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify({ type: "line", text }));
      return true;
    }
    return false;
  }

  function askQuietly(command, what) {
    if (send(command)) state.quiet[what] += 1;
  }

  // Close codes after which the page reconnects by itself (docs/websocket.md):
  // the server going away or restarting, the connection dropped, try later.
  const COME_BACK = new Set([1001, 1006, 1011, 1012, 1013, 1014]);

  function connect() {
    clearTimeout(state.retryTimer);
    $("reconnect").hidden = true;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    state.ws = ws;
    state.quiet = { members: 0, rooms: 0 };
    state.loginSent = false;
    setStatus(state.retry ? "reconnecting" : "connecting", state.retry ? "reconnecting…" : "connecting…");
    ws.addEventListener("open", () => {
      state.loggedIn = false;
      setStatus("open", "connected");
    });
    ws.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      const handle = on[event.type];
      if (handle) handle(event);
    });
    ws.addEventListener("close", (close) => {
      if (state.ws !== ws) return;
      state.ws = null;
      state.loggedIn = false;
      const why = close.reason ? ` (${close.reason})` : "";
      if (!COME_BACK.has(close.code)) {
        // We quit, or were removed or refused: coming back is the person's choice.
        if (close.code === 4001 || close.code === 4003) state.credentials = null;
        server(`disconnected${why}`, "error");
        setStatus("closed", "disconnected");
        $("reconnect").hidden = false;
        return;
      }
      const delay = Math.min(30, 2 ** state.retry) * (0.75 + Math.random() / 2);
      state.retry += 1;
      server(`disconnected${why}; reconnecting in ${Math.round(delay)} s`, "error");
      let left = Math.round(delay);
      setStatus("reconnecting", `reconnecting in ${left} s…`);
      const tick = setInterval(() => {
        left -= 1;
        if (left > 0 && state.ws === null) setStatus("reconnecting", `reconnecting in ${left} s…`);
        else clearInterval(tick);
      }, 1000);
      state.retryTimer = setTimeout(connect, delay * 1000);
    });
  }

  // ---- what the user does -----------------------------------------------------

  function remember(line) {
    if (/^\/login\s/i.test(line)) return; // never keep a password
    if (state.typed[state.typed.length - 1] !== line) state.typed.push(line);
    if (state.typed.length > HISTORY_LIMIT) state.typed.shift();
    state.typedAt = state.typed.length;
  }

  $("say-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const say = $("say");
    const line = say.value;
    if (!line.trim()) return;
    const login = /^\/login\s+(\S+)\s+(\S+)/i.exec(line);
    if (login) {
      state.credentials = [login[1], login[2]];
      state.loginSent = true;
    }
    if (!send(line)) {
      server("not connected; your line was not sent", "error");
      return;
    }
    remember(line);
    showOwn(line);
    say.value = "";
  });

  $("say").addEventListener("keydown", (event) => {
    const say = $("say");
    if (event.key === "ArrowUp" && state.typedAt > 0) {
      state.typedAt -= 1;
      say.value = state.typed[state.typedAt];
    } else if (event.key === "ArrowDown" && state.typedAt < state.typed.length) {
      state.typedAt += 1;
      say.value = state.typed[state.typedAt] || "";
    } else {
      return;
    }
    event.preventDefault();
    say.setSelectionRange(say.value.length, say.value.length);
  });

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("login-name").value.trim();
    const password = $("login-password").value;
    if (!name || !password) return;
    state.credentials = [name, password];
    $("login-password").value = "";
    state.loginSent = send(`/login ${name} ${password}`);
  });

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const room = $("join-name").value.trim().replace(/^#/, "");
    if (room && send(`/join ${room}`)) {
      $("join-name").value = "";
      closeDrawer();
    }
  });

  $("reconnect").addEventListener("click", () => {
    state.retry = 0;
    connect();
  });

  $("me").addEventListener("click", () => {
    $("nick-form").hidden = false;
    $("nick-name").value = state.name;
    $("nick-name").select();
    $("nick-name").focus();
  });

  $("nick-cancel").addEventListener("click", () => {
    $("nick-form").hidden = true;
  });

  $("nick-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("nick-name").value.trim();
    if (name && name !== state.name) send(`/nick ${name}`);
    $("nick-form").hidden = true;
    $("say").focus();
  });

  function closeDrawer() {
    $("app").classList.remove("drawer");
    $("menu").setAttribute("aria-expanded", "false");
  }

  $("menu").addEventListener("click", () => {
    const open = $("app").classList.toggle("drawer");
    $("menu").setAttribute("aria-expanded", String(open));
    if (open && state.loggedIn) askQuietly("/rooms", "rooms");
  });

  // The room list (counts, unread) is asked for when it may have changed
  // for someone looking: on moves, on opening the drawer, on coming back to
  // the page; never on a timer (each request is a line in the server's log).
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      state.hiddenUnread = 0;
      title();
      if (state.loggedIn) askQuietly("/rooms", "rooms");
    }
  });
  window.addEventListener("focus", () => {
    if (state.loggedIn) askQuietly("/rooms", "rooms");
  });

  connect();
})();
