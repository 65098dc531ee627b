// canon serve's dashboard: the tenant's jobs, each job's runs and its
// tally computed here from the receipts this page verified (under the
// coordinator's policy, which it shows), a node's runs; live from the
// event stream. The server's own tally is only compared with.

import { tally, supported, credibilityOf, sha256Hex } from './verify.js';
import { el, renderTally, time } from './render.js';

const main = document.getElementById('main');
const live = document.getElementById('live');
let token = sessionStorage.getItem('canon-token') ?? '';

async function api(path, init = {}) {
  const r = await fetch(path, { ...init, headers: { Authorization: `Bearer ${token}`, ...(init.headers ?? {}) } });
  if (r.status === 401) {
    token = '';
    sessionStorage.removeItem('canon-token');
    throw new Error('the token was refused');
  }
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.status === 204 ? null : r.json();
}

const short = (s) => (s ? s.slice(0, 12) : '-');
const shortId = (id) => (id ? id.slice(8, 20) : '-');
const ms = (t) => (t ? new Date(t).toISOString() : null);

function login(message) {
  const input = el('input', { id: 'token', type: 'password', autocomplete: 'off', required: true });
  const form = el('form', { id: 'login' }, el('label', { for: 'token', text: 'Tenant token' }), input, el('button', { type: 'submit', text: 'Open' }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    token = input.value;
    sessionStorage.setItem('canon-token', token);
    start();
  });
  main.replaceChildren(el('h2', { text: 'Sign in' }), message ? el('p', { class: 'bad', text: message }) : '', form);
  document.body.dataset.state = 'login';
  input.focus();
}

function params() {
  const [path, query] = location.hash.slice(1).split('?');
  return { parts: path.split('/').filter(Boolean), q: new URLSearchParams(query ?? '') };
}

async function listView(q) {
  const qs = new URLSearchParams();
  for (const k of ['status', 'group', 'submitter', 'cursor']) if (q.get(k)) qs.set(k, q.get(k));
  qs.set('limit', '25');
  const page = await api(`/v1/jobs?${qs}`);
  const status = el('select', { id: 'f-status', name: 'status' }, ['', 'pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled'].map((s) => el('option', { value: s, selected: s === (q.get('status') ?? ''), text: s || 'any' })));
  const group = el('input', { id: 'f-group', name: 'group', value: q.get('group') ?? '' });
  const submitter = el('input', { id: 'f-submitter', name: 'submitter', value: q.get('submitter') ?? '', placeholder: 'did:key:…', spellcheck: 'false', autocomplete: 'off' });
  const form = el('form', { class: 'filters', role: 'search' }, el('label', {}, 'status', status), el('label', {}, 'group', group), el('label', {}, 'submitter', submitter), el('button', { type: 'submit', text: 'Filter' }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new URLSearchParams();
    if (status.value) f.set('status', status.value);
    if (group.value) f.set('group', group.value);
    if (submitter.value.trim()) f.set('submitter', submitter.value.trim());
    location.hash = `#/?${f}`;
  });
  const table = el('table', { id: 'jobs' }, el('caption', { text: 'Jobs, newest first (verdicts as the server reports them; open a job to verify)' }));
  table.append(el('thead', {}, el('tr', {}, ['job', 'name', 'state', 'group', 'submitter', 'server verdict', 'submitted'].map((h) => el('th', { scope: 'col', text: h })))));
  table.append(
    el(
      'tbody',
      {},
      page.jobs.map((j) =>
        el('tr', { 'data-job': j.id, 'data-state': j.state }, el('td', {}, el('a', { href: `#/job/${encodeURIComponent(j.id)}`, class: 'mono', text: short(j.id) })), el('td', { text: j.name }), el('td', { class: 'status', text: j.state }), el('td', { text: j.group ?? '' }), el('td', {}, j.submitter ? el('a', { class: 'node', href: `#/?${new URLSearchParams({ submitter: j.submitter })}`, title: `${j.submitter}: show only this submitter's jobs`, text: shortId(j.submitter) }) : el('span', { class: 'note', text: 'unsigned' })), el('td', { text: j.verdict ?? '-' }), el('td', {}, time(ms(j.created_at)))),
      ),
    ),
  );
  const more = page.next_cursor ? el('a', { id: 'next', href: `#/?${new URLSearchParams({ ...Object.fromEntries(q), cursor: page.next_cursor })}`, text: 'Older jobs →' }) : '';
  main.replaceChildren(el('h2', { text: 'Jobs' }), form, table, more);
}

async function jobView(id) {
  const [v, rc, policy] = await Promise.all([api(`/v1/jobs/${encodeURIComponent(id)}`), api(`/v1/jobs/${encodeURIComponent(id)}/receipts`), api('/v1/policy')]);
  const runs = el('table', { id: 'runs' }, el('caption', { text: 'Runs, per node' }));
  runs.append(el('thead', {}, el('tr', {}, ['run', 'node', 'state', 'duration', 'engine', 'outcome', 'log'].map((h) => el('th', { scope: 'col', text: h })))));
  runs.append(
    el(
      'tbody',
      {},
      v.run_list.map((r) => {
        const logButton = el('button', { type: 'button', text: 'show log' });
        const cell = el('td', {}, logButton);
        logButton.addEventListener('click', async () => {
          const res = await fetch(`/v1/jobs/${encodeURIComponent(id)}/runs/${encodeURIComponent(r.id)}/log`, { headers: { Authorization: `Bearer ${token}` } });
          cell.replaceChildren(el('pre', { class: 'log', text: res.ok ? await res.text() : `no log (${res.status})` }));
        });
        const dur = r.finished_at ? `${((r.finished_at - r.leased_at) / 1000).toFixed(1)} s` : '…';
        return el('tr', { 'data-run': r.id, 'data-state': r.state }, el('td', { class: 'mono', title: r.id, text: short(r.id) }), el('td', {}, el('a', { class: 'node', href: `#/node/${encodeURIComponent(r.node)}`, title: r.node, text: shortId(r.node) })), el('td', { class: 'status', text: r.state + (r.reason ? `: ${r.reason}` : '') }), el('td', { text: dur }), el('td', { class: 'engine', text: r.outcome ? '…' : '-' }), el('td', { class: 'mono', text: short(r.outcome) }), cell);
      }),
    ),
  );
  const section = el('section', { id: 'tally', 'aria-label': 'tally' });
  main.replaceChildren(
    el('h2', { text: `Job ${v.name}` }),
    el('dl', { class: 'policy' }, el('dt', { text: 'id' }), el('dd', { class: 'mono', text: v.id }), el('dt', { text: 'state' }), el('dd', { id: 'job-state', class: 'status', text: v.state + (v.reason ? `: ${v.reason}` : '') }), el('dt', { text: 'group' }), el('dd', { text: v.group ?? '-' }), el('dt', { text: 'submitted' }), el('dd', {}, time(ms(v.created_at)))),
    runs,
    section,
  );
  const receipts = rc.receipts.map(([run, env]) => ({ source: run, bytes: new TextEncoder().encode(env) }));
  const t = await tally(receipts, { policy, expectedJob: v.job_digest });
  // Each run's engine, as its receipt (verified here) names it.
  for (const c of t.checked) {
    const cell = runs.querySelector(`tr[data-run="${CSS.escape(c.source)}"] td.engine`);
    if (cell) cell.textContent = c.ok ? `${c.receipt.engine.backend}, canon ${c.receipt.engine.canon}, wasmtime ${c.receipt.engine.wasmtime}, ABI ${c.receipt.engine.determinism_abi}` : `receipt invalid: ${c.code}`;
  }
  // Each receipt saves as the envelope the page verified, for `canon verify`.
  const links = receipts.map((r) => ({ href: objectUrl(new Blob([r.bytes], { type: 'application/json' })), download: `${r.source}.receipt.json`, title: 'save this receipt (the DSSE envelope verified here)' }));
  renderTally(section, t, { theirs: v.tally, theirsLabel: "the server's tally", links });
  section.append(artifacts(id, t, receipts));
}

/**
 * The accepted outcome's files, as the receipts this page verified name
 * them: each downloads from the coordinator and is saved only if its
 * SHA-256 is the one those receipts signed. Nothing to download without
 * an accepted outcome.
 */
function artifacts(id, t, receipts) {
  const box = el('section', { id: 'artifacts', 'aria-label': 'artifacts' }, el('h2', { text: 'Artifacts' }));
  const all = el('a', { id: 'all-receipts', href: objectUrl(new Blob([JSON.stringify(Object.fromEntries(receipts.map((r) => [r.source, new TextDecoder().decode(r.bytes)])), null, 2)], { type: 'application/json' })), download: `${id}.receipts.json`, text: `Save all ${receipts.length} receipts` });
  box.append(el('p', {}, all, el('span', { class: 'note', text: ' (one JSON object, run id → DSSE envelope; each alone is in the receipts table above)' })));
  const g = t.groups.find((x) => x.outcome === t.accepted);
  if (!g) {
    box.append(el('p', { id: 'no-artifacts', text: `No accepted outcome (${t.verdict}), so there are no accepted artifacts to download.` }));
    return box;
  }
  const o = g.votes[0].receipt;
  const files = [
    { path: 'stdout', kind: 'file', sha256: o.stdout },
    { path: 'stderr', kind: 'file', sha256: o.stderr },
    ...o.manifest,
  ];
  const table = el('table', { id: 'artifact-files' }, el('caption', { text: `The accepted outcome ${g.outcome.slice(0, 12)}: every file its receipts name, checked against their SHA-256 before it is saved` }));
  table.append(el('thead', {}, el('tr', {}, ['path', 'kind', 'sha256', ''].map((h) => el('th', { scope: 'col', text: h })))));
  const body = el('tbody');
  for (const f of files) {
    const cell = el('td');
    if (f.kind === 'file' || f.kind === 'symlink') {
      const button = el('button', { type: 'button', 'data-path': f.path, text: f.kind === 'symlink' ? 'show target' : 'download' });
      button.addEventListener('click', async () => {
        button.disabled = true;
        try {
          const r = await fetch(`/v1/jobs/${encodeURIComponent(id)}/blobs/${f.sha256}`, { headers: { Authorization: `Bearer ${token}` } });
          if (!r.ok) throw new Error(`the coordinator answered ${r.status}`);
          const bytes = new Uint8Array(await r.arrayBuffer());
          const got = await sha256Hex(bytes);
          if (got !== f.sha256) throw new Error(`the coordinator sent bytes with SHA-256 ${got.slice(0, 12)}, not the ${f.sha256.slice(0, 12)} the receipts signed: not saved`);
          if (f.kind === 'symlink') {
            cell.replaceChildren(el('span', { class: 'ok', text: `✔ → ${new TextDecoder().decode(bytes)}` }));
            return;
          }
          const a = el('a', { href: objectUrl(new Blob([bytes], { type: 'application/octet-stream' })), download: f.path.split('/').filter(Boolean).pop() ?? 'artifact', text: 'save' });
          cell.replaceChildren(el('span', { class: 'ok', 'data-checked': 'true', text: `✔ ${bytes.length} bytes, SHA-256 checked ` }), a);
          a.click();
        } catch (e) {
          cell.replaceChildren(el('span', { class: 'bad', role: 'alert', 'data-checked': 'false', text: `✖ ${e.message ?? e}` }));
        }
      });
      cell.append(button);
    }
    body.append(el('tr', { 'data-artifact': f.path }, el('td', { class: 'mono', text: f.path }), el('td', { text: f.kind }), el('td', { class: 'mono', title: f.sha256 ?? '', text: f.sha256 ? f.sha256.slice(0, 12) : '-' }), cell));
  }
  table.append(body);
  box.append(table);
  return box;
}

async function nodeView(node, q) {
  const qs = new URLSearchParams({ limit: '200' });
  if (q.get('cursor')) qs.set('cursor', q.get('cursor'));
  const [page, policy] = await Promise.all([api(`/v1/nodes/${encodeURIComponent(node)}/runs?${qs}`), api('/v1/policy')]);
  // Oldest first, for the history; a run counts once its job has an accepted outcome.
  const history = [];
  let agreed = 0, dissented = 0;
  for (const r of [...page.runs].reverse()) {
    if (!r.accepted || !r.outcome) continue;
    if (r.outcome === r.accepted) agreed += 1;
    else dissented += 1;
    history.push({ at: r.finished_at ?? r.leased_at, agreed: r.outcome === r.accepted, value: credibilityOf(agreed, dissented, policy.fault_rate ?? 0) });
  }
  const rows = page.runs.map((r) => {
    const said = !r.accepted || !r.outcome ? '-' : r.outcome === r.accepted ? 'agreed' : 'dissented';
    return el('tr', { 'data-run': r.run, 'data-said': said }, el('td', {}, el('a', { href: `#/job/${encodeURIComponent(r.job)}`, text: r.job_name })), el('td', { class: 'status', text: r.state + (r.reason ? `: ${r.reason}` : '') }), el('td', { class: 'mono', title: r.outcome ?? '', text: short(r.outcome) }), el('td', { text: said }), el('td', {}, time(ms(r.leased_at))));
  });
  const table = el('table', { id: 'node-runs' }, el('caption', { text: "This node's runs, newest first (its outcomes and each job's accepted outcome as the server records them; open a job to verify its receipts)" }), el('thead', {}, el('tr', {}, ['job', 'run state', 'its outcome', 'with the accepted outcome', 'leased'].map((h) => el('th', { scope: 'col', text: h })))), el('tbody', {}, rows));
  const now = history.length ? history[history.length - 1].value : credibilityOf(0, 0, policy.fault_rate ?? 0);
  const more = page.next_cursor ? el('a', { id: 'next', href: `#/node/${encodeURIComponent(node)}?${new URLSearchParams({ cursor: page.next_cursor })}`, text: 'Older runs →' }) : '';
  main.replaceChildren(
    el('h2', { text: 'Node' }),
    el('p', { class: 'mono', text: node }),
    el('p', { id: 'node-summary', 'data-agreed': agreed, 'data-dissented': dissented, text: `${page.runs.length} runs: agreed ${agreed}, dissented ${dissented}; credibility ${now.toFixed(3)}${policy.credibility ? " (the policy weights votes by credibility, but this coordinator keeps no ledger: it tallies each job as if every node were new)" : ' (the policy does not weight votes by it)'}` }),
    chart(history, policy.fault_rate ?? 0),
    table,
    more,
  );
}

/**
 * Credibility after each run with an accepted outcome, oldest to newest, as
 * a small line chart: a dot per run (hollow and red where it dissented),
 * the exact value and time on hover, and the same numbers in words.
 */
function chart(history, faultRate) {
  const NS = 'http://www.w3.org/2000/svg';
  const s = (tag, attrs = {}, ...kids) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    e.append(...kids);
    return e;
  };
  const fig = el('figure', { id: 'credibility', class: 'chart' });
  const caption = history.length
    ? `Credibility over this node's last ${history.length} decided runs, from ${history[0].value.toFixed(3)} to ${history[history.length - 1].value.toFixed(3)} (fault rate ${faultRate}); ${history.filter((h) => !h.agreed).length} dissents, each a red ring.`
    : 'No decided runs yet: no credibility history to draw.';
  if (history.length) {
    const W = 320, H = 96, P = 18;
    const x = (i) => P + (history.length === 1 ? (W - 2 * P) / 2 : (i * (W - 2 * P)) / (history.length - 1));
    const y = (v) => H - P - v * (H - 2 * P);
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': caption, class: 'credibility' });
    svg.append(
      s('line', { x1: P, y1: y(0), x2: W - P, y2: y(0), class: 'axis' }),
      s('line', { x1: P, y1: y(1), x2: W - P, y2: y(1), class: 'grid' }),
      s('text', { x: 2, y: y(1) + 4, class: 'tick' }, '1'),
      s('text', { x: 2, y: y(0) + 4, class: 'tick' }, '0'),
      s('polyline', { points: history.map((h, i) => `${x(i).toFixed(1)},${y(h.value).toFixed(1)}`).join(' '), class: 'line' }),
    );
    history.forEach((h, i) => {
      const dot = s('circle', { cx: x(i).toFixed(1), cy: y(h.value).toFixed(1), r: h.agreed ? 2.5 : 4, class: h.agreed ? 'dot' : 'dot dissent', 'data-value': h.value.toFixed(6) });
      dot.append(s('title', {}, `${h.agreed ? 'agreed' : 'dissented'}, ${new Date(h.at).toLocaleString()} (${new Date(h.at).toISOString()}): credibility ${h.value.toFixed(4)}`));
      svg.append(dot);
    });
    fig.append(svg);
  }
  fig.append(el('figcaption', { text: caption }));
  return fig;
}

// Object URLs of the view on screen (saved receipts, checked artifacts),
// released when the view is drawn again: the live view redraws on every
// event.
const objectUrls = [];
function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  objectUrls.push(url);
  return url;
}

async function render() {
  for (const url of objectUrls.splice(0)) URL.revokeObjectURL(url);
  const { parts, q } = params();
  try {
    if (parts[0] === 'job' && parts[1]) await jobView(decodeURIComponent(parts[1]));
    else if (parts[0] === 'node' && parts[1]) await nodeView(decodeURIComponent(parts[1]), q);
    else await listView(q);
    document.body.dataset.state = 'ready';
  } catch (e) {
    if (!token) return login(String(e.message ?? e));
    main.replaceChildren(el('p', { class: 'bad', role: 'alert', text: `Error: ${e.message ?? e}` }));
    document.body.dataset.state = 'error';
  }
}

let pending = null;
function rerender() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    await render();
  }, 150);
}

// Server-sent events over fetch (an EventSource cannot send the token).
async function follow() {
  let last = null;
  for (;;) {
    try {
      const r = await fetch(`/v1/events${last ? `?after=${last}` : ''}`, { headers: { Authorization: `Bearer ${token}` } });
      if (!r.ok) throw new Error(`events: ${r.status}`);
      live.textContent = 'live';
      document.body.dataset.live = 'true';
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let k;
        while ((k = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, k);
          buf = buf.slice(k + 2);
          const id = block.split('\n').find((l) => l.startsWith('id:'));
          if (id) last = id.slice(3).trim();
          if (block.split('\n').some((l) => l.startsWith('data:'))) rerender();
        }
      }
    } catch (e) {
      live.textContent = `reconnecting (${e.message ?? e})`;
      document.body.dataset.live = 'false';
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
}

let started = false;
async function start() {
  if (!token) return login();
  if (!(await supported())) {
    main.replaceChildren(el('p', { class: 'verdict unverified', role: 'alert', text: 'NOT VERIFIED: this browser offers no Ed25519 in WebCrypto here (open the dashboard over https or on localhost), so it cannot check receipts and shows no verdict as verified.' }));
    document.body.dataset.state = 'unsupported';
    return;
  }
  await render();
  if (!started && token) {
    started = true;
    window.addEventListener('hashchange', render);
    follow();
  }
}

start();
