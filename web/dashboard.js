// canon serve's dashboard: the tenant's jobs, each job's runs and its
// tally computed here from the receipts this page verified (under the
// coordinator's policy, which it shows), a node's runs; live from the
// event stream. The server's own tally is only compared with.

import { tally, supported } from './verify.js';
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
  for (const k of ['status', 'group', 'cursor']) if (q.get(k)) qs.set(k, q.get(k));
  qs.set('limit', '25');
  const page = await api(`/v1/jobs?${qs}`);
  const status = el('select', { id: 'f-status', name: 'status' }, ['', 'pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled'].map((s) => el('option', { value: s, selected: s === (q.get('status') ?? ''), text: s || 'any' })));
  const group = el('input', { id: 'f-group', name: 'group', value: q.get('group') ?? '' });
  const form = el('form', { class: 'filters', role: 'search' }, el('label', {}, 'status', status), el('label', {}, 'group', group), el('button', { type: 'submit', text: 'Filter' }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new URLSearchParams();
    if (status.value) f.set('status', status.value);
    if (group.value) f.set('group', group.value);
    location.hash = `#/?${f}`;
  });
  const table = el('table', { id: 'jobs' }, el('caption', { text: 'Jobs, newest first (verdicts as the server reports them; open a job to verify)' }));
  table.append(el('thead', {}, el('tr', {}, ['job', 'name', 'state', 'group', 'server verdict', 'submitted'].map((h) => el('th', { scope: 'col', text: h })))));
  table.append(
    el(
      'tbody',
      {},
      page.jobs.map((j) =>
        el('tr', { 'data-job': j.id, 'data-state': j.state }, el('td', {}, el('a', { href: `#/job/${encodeURIComponent(j.id)}`, class: 'mono', text: short(j.id) })), el('td', { text: j.name }), el('td', { class: 'status', text: j.state }), el('td', { text: j.group ?? '' }), el('td', { text: j.verdict ?? '-' }), el('td', {}, time(ms(j.created_at)))),
      ),
    ),
  );
  const more = page.next_cursor ? el('a', { id: 'next', href: `#/?${new URLSearchParams({ ...Object.fromEntries(q), cursor: page.next_cursor })}`, text: 'Older jobs →' }) : '';
  main.replaceChildren(el('h2', { text: 'Jobs' }), form, table, more);
}

async function jobView(id) {
  const [v, rc, policy] = await Promise.all([api(`/v1/jobs/${encodeURIComponent(id)}`), api(`/v1/jobs/${encodeURIComponent(id)}/receipts`), api('/v1/policy')]);
  const runs = el('table', { id: 'runs' }, el('caption', { text: 'Runs, per node' }));
  runs.append(el('thead', {}, el('tr', {}, ['run', 'node', 'state', 'duration', 'outcome', 'log'].map((h) => el('th', { scope: 'col', text: h })))));
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
        return el('tr', { 'data-run': r.id, 'data-state': r.state }, el('td', { class: 'mono', title: r.id, text: short(r.id) }), el('td', {}, el('a', { class: 'node', href: `#/node/${encodeURIComponent(r.node)}`, title: r.node, text: shortId(r.node) })), el('td', { class: 'status', text: r.state + (r.reason ? `: ${r.reason}` : '') }), el('td', { text: dur }), el('td', { class: 'mono', text: short(r.outcome) }), cell);
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
  renderTally(section, t, { theirs: v.tally, theirsLabel: "the server's tally" });
}

async function nodeView(node) {
  const page = await api('/v1/jobs?limit=50');
  const views = await Promise.all(page.jobs.map((j) => api(`/v1/jobs/${encodeURIComponent(j.id)}`)));
  const rows = [];
  let agreed = 0, dissented = 0;
  for (const v of views) {
    for (const r of v.run_list.filter((x) => x.node === node)) {
      const d = v.tally?.dissenters?.some((x) => x.node === node);
      const a = v.tally?.accepted && r.outcome === v.tally.accepted;
      agreed += a ? 1 : 0;
      dissented += d ? 1 : 0;
      rows.push(el('tr', {}, el('td', {}, el('a', { href: `#/job/${encodeURIComponent(v.id)}`, text: v.name })), el('td', { class: 'status', text: r.state }), el('td', { text: a ? 'agreed' : d ? 'dissented' : '-' }), el('td', {}, time(ms(r.leased_at)))));
    }
  }
  const table = el('table', { id: 'node-runs' }, el('caption', { text: "This node's runs among the newest 50 jobs (as the server reports them)" }), el('thead', {}, el('tr', {}, ['job', 'run state', 'with the accepted outcome', 'leased'].map((h) => el('th', { scope: 'col', text: h })))), el('tbody', {}, rows));
  main.replaceChildren(el('h2', { text: 'Node' }), el('p', { class: 'mono', text: node }), el('p', { id: 'node-summary', text: `${rows.length} runs: agreed ${agreed}, dissented ${dissented}` }), table);
}

async function render() {
  const { parts, q } = params();
  try {
    if (parts[0] === 'job' && parts[1]) await jobView(decodeURIComponent(parts[1]));
    else if (parts[0] === 'node' && parts[1]) await nodeView(decodeURIComponent(parts[1]));
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
