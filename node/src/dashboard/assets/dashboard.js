// The ring dashboard: polls this node's JSON endpoints every second and draws what its
// replica holds. Everything is built as one markup string per panel (a 10,000-virtual-
// node ring is one innerHTML assignment, not 10,000 DOM calls).
"use strict";

(function () {
  const POLL_MS = 1000;
  const SIZE = 640;
  const RADIUS = 270;
  const params = new URLSearchParams(window.location.search);
  const ringName = params.get("ring");
  const kind = params.get("kind") || "hashring";
  // The topology drawn: the server sends positions only when it differs.
  let drawnVersion = null;
  let busy = false;

  const byId = (id) => document.getElementById(id);
  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
  // Distinct hues for neighbours in name order (the golden angle).
  const colour = (i) => "hsl(" + Math.round((i * 137.508) % 360) + ", 62%, 46%)";

  async function getJson(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) {
      throw new Error(url + ": " + response.status + " " + (await response.text()).trim());
    }
    return response.json();
  }

  function showReplica(applied) {
    byId("replica").textContent = "this node's replica, applied index " + applied;
  }

  function renderList(list) {
    const rows = list.rings.map((r) => {
      const href = "/?ring=" + encodeURIComponent(r.ring) + "&kind=" + encodeURIComponent(r.kind);
      return "<tr><td><a href=\"" + esc(href) + "\">" + esc(r.ring) + "</a></td><td>" +
        esc(r.kind) + "</td><td>" + r.nodes + "</td><td>" + r.keys + "</td></tr>";
    });
    byId("ring-list").tBodies[0].innerHTML = rows.length ? rows.join("") :
      "<tr><td colspan=\"4\">no rings yet</td></tr>";
    byId("ring-list-more").textContent = list.omitted > 0 ?
      list.omitted + " more rings not listed (" + list.total + " in all)" : "";
    showReplica(list.applied_index);
  }

  function drawCircle(view) {
    const centre = SIZE / 2;
    const spaceSize = Number(view.space_size);
    const parts = [
      "<svg id=\"ring-svg\" viewBox=\"0 0 " + SIZE + " " + SIZE +
        "\" width=\"" + SIZE + "\" height=\"" + SIZE + "\">",
      "<circle class=\"ring\" cx=\"" + centre + "\" cy=\"" + centre + "\" r=\"" + RADIUS + "\"></circle>",
    ];
    view.nodes.forEach((node, i) => {
      const name = esc(node.name);
      const positions = node.positions || [];
      parts.push("<g class=\"node-marks\" data-node=\"" + name + "\" stroke=\"" + colour(i) + "\">");
      for (const position of positions) {
        // Clockwise from twelve o'clock, as positions grow.
        const angle = (Number(position) / spaceSize) * 2 * Math.PI - Math.PI / 2;
        const cos = Math.cos(angle);
        const sin = Math.sin(angle);
        parts.push(
          "<line class=\"mark\" x1=\"" + (centre + (RADIUS - 16) * cos).toFixed(1) +
          "\" y1=\"" + (centre + (RADIUS - 16) * sin).toFixed(1) +
          "\" x2=\"" + (centre + (RADIUS + 16) * cos).toFixed(1) +
          "\" y2=\"" + (centre + (RADIUS + 16) * sin).toFixed(1) +
          "\"><title>" + name + " at " + esc(position) + "</title></line>");
      }
      parts.push("</g>");
    });
    parts.push("</svg>");
    byId("ring-circle").innerHTML = parts.join("");
    // What was drawn, counted from the DOM, for people and for tests.
    for (const group of byId("ring-circle").querySelectorAll("g.node-marks")) {
      group.setAttribute("data-marks", String(group.getElementsByTagName("line").length));
    }
  }

  function renderNodes(view) {
    byId("load-heading").textContent = view.unit === "MB" ? "MB used / limit" : "keys / capacity";
    const drawn = new Map();
    for (const group of byId("ring-circle").querySelectorAll("g.node-marks")) {
      drawn.set(group.getAttribute("data-node"), group.getAttribute("data-marks"));
    }
    const BAR = 120;
    // Colours and widths as SVG attributes: the page's policy forbids inline styles.
    const rows = view.nodes.map((node, i) => {
      const limit = node.limit === null ? "unlimited" : node.limit;
      const share = node.limit ? Math.max(0, Math.min(1, node.load / node.limit)) : 0;
      const full = node.limit !== null && node.load >= node.limit;
      const swatch = "<svg class=\"swatch\" width=\"12\" height=\"12\"><rect width=\"12\" height=\"12\" rx=\"2\" fill=\"" +
        colour(i) + "\"></rect></svg>";
      const bar = "<svg class=\"bar" + (full ? " full" : "") + "\" width=\"" + BAR + "\" height=\"9\">" +
        "<rect class=\"bar-back\" width=\"" + BAR + "\" height=\"9\" rx=\"3\"></rect>" +
        "<rect class=\"bar-fill\" width=\"" + (share * BAR).toFixed(1) + "\" height=\"9\" rx=\"3\"></rect></svg>";
      return "<tr data-node=\"" + esc(node.name) + "\"><td>" + swatch + esc(node.name) + "</td><td>" +
        (drawn.get(node.name) ?? node.replicas) + "</td><td>" + node.load + " / " + limit + "</td><td>" + bar +
        "</td></tr>";
    });
    byId("node-table").tBodies[0].innerHTML = rows.join("");
  }

  function renderRing(view) {
    byId("ring-title").textContent = view.kind + " ring \u201c" + view.ring + "\u201d";
    showReplica(view.applied_index);
    if (!view.exists) {
      byId("ring-summary").textContent = "no such ring on this node's replica";
      byId("ring-circle").innerHTML = "";
      byId("node-table").tBodies[0].innerHTML = "";
      drawnVersion = null;
      return;
    }
    const items = view.unit === "MB" ? "requests" : "keys";
    byId("ring-summary").textContent = view.nodes.length + " nodes, " + view.virtual_nodes +
      " virtual nodes, " + view.items + " " + items + ", " + view.evictions +
      " LRU evictions (since this replica started)" +
      (view.drawable ? "" : "; too many virtual nodes to draw");
    if (view.positions_included) {
      drawCircle(view);
      drawnVersion = view.version;
    } else if (!view.drawable) {
      byId("ring-circle").innerHTML = "";
      drawnVersion = null;
    }
    renderNodes(view);
  }

  function renderCluster(status) {
    const facts = [
      ["this node", status.id + " (" + status.role + ")"],
      ["leader", status.leader_id === 0 ? "none known" : status.leader_id],
      ["term", status.term],
      ["commit / applied", status.commit_index + " / " + status.applied_index],
      ["snapshot index", status.snapshot_index],
      ["state digest", status.state_digest],
      ["cluster id", status.cluster_id || "(not yet)"],
    ];
    byId("cluster-facts").innerHTML = facts
      .map(([name, value]) => "<dt>" + esc(name) + "</dt><dd>" + esc(value) + "</dd>")
      .join("");
    byId("members").tBodies[0].innerHTML = status.members
      .map((m) => "<tr data-member=\"" + m.id + "\"><td>" + m.id + (m.this_node ? " (this node)" : "") +
        "</td><td>" + esc(m.role) + "</td><td>" + esc(m.address) + "</td><td>" + esc(m.peer_address) +
        "</td></tr>")
      .join("");
  }

  async function poll() {
    if (busy) {
      return;
    }
    busy = true;
    try {
      if (ringName) {
        let url = "/api/ring?ring=" + encodeURIComponent(ringName) + "&kind=" + encodeURIComponent(kind);
        if (drawnVersion) {
          url += "&have=" + encodeURIComponent(drawnVersion);
        }
        renderRing(await getJson(url));
      } else {
        renderList(await getJson("/api/rings"));
      }
      renderCluster(await getJson("/api/cluster"));
      byId("error").textContent = "";
    } catch (error) {
      byId("error").textContent = String(error.message || error);
    } finally {
      busy = false;
    }
  }

  byId(ringName ? "ring-panel" : "list-panel").hidden = false;
  poll();
  window.setInterval(poll, POLL_MS);
})();
