// Shows a tally computed by verify.js: the verdict in words, the outcome
// groups with their nodes and a trust bar with the threshold marked, the
// dissenters and what differs in their outcome, every receipt with its own
// verification, and whether canon's tally (the server's, or the one
// `canon quorum` wrote into a report) says the same. Shared by the static
// report and the dashboard; text is only ever set as text, never as markup.

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v; // CSSOM, which a CSP without 'unsafe-inline' allows
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const short = (h) => (h ? h.slice(0, 12) : '');
const shortId = (id) => (id ? id.slice(8, 20) : '-');
const label = (v) => v.name ?? shortId(v.node);
const fixed = (x) => Number(x).toFixed(2);

/** A time in the viewer's zone, with the exact UTC value on hover. */
export function time(iso) {
  if (!iso) return el('span', { text: '-' });
  const d = new Date(iso);
  const shown = Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  return el('time', { datetime: iso, title: iso, text: shown });
}

/** The verdict as a sentence, as `canon quorum` words it. */
export function verdictText(t) {
  const g = t.groups.find((x) => x.outcome === t.accepted);
  switch (t.verdict) {
    case 'accepted':
      return `ACCEPTED: outcome ${short(g.outcome)} (${g.counted} agreeing, trust ${fixed(g.score)} ≥ ${fixed(t.policy.threshold)})`;
    case 'disputed':
      return 'DISPUTED: trusted nodes on the same engine got different outcomes, and none reaches the threshold';
    case 'nondeterministic':
      return 'NONDETERMINISTIC: a trusted node signed different outcomes for this job on one engine, and no outcome is accepted';
    default:
      return 'INSUFFICIENT: not enough trusted weight agrees yet';
  }
}

const ICON = { accepted: '✔', disputed: '✖', nondeterministic: '✖', insufficient: '…' };

/** A bar for a score in [0, 1] with the threshold marked; the numbers are in its label and beside it. */
export function trustBar(score, threshold) {
  const pct = (x) => `${Math.round(Math.min(Math.max(x, 0), 1) * 1000) / 10}%`;
  return el(
    'span',
    { class: 'trust' },
    el(
      'span',
      { class: 'bar', role: 'img', 'aria-label': `trust ${fixed(score)} of 1, threshold ${fixed(threshold)}` },
      el('span', { class: 'fill', style: `width:${pct(score)}` }),
      el('span', { class: 'mark', style: `left:${pct(threshold)}`, title: `threshold ${fixed(threshold)}` }),
    ),
    el('span', { class: 'score', text: fixed(score) }),
  );
}

/** What differs between two verified receipts: the `canon diff` view. */
export function outcomeDiff(a, b) {
  const out = [];
  if (a.termination !== b.termination) out.push(`termination: ${a.termination} vs ${b.termination}`);
  if (a.fuelConsumed !== b.fuelConsumed) out.push(`fuel: ${a.fuelConsumed} vs ${b.fuelConsumed}`);
  if (a.stdout !== b.stdout) out.push(`stdout: sha256 ${short(a.stdout)} vs ${short(b.stdout)}`);
  if (a.stderr !== b.stderr) out.push(`stderr: sha256 ${short(a.stderr)} vs ${short(b.stderr)}`);
  const files = (r) => new Map(r.manifest.map((e) => [e.path, e]));
  const fa = files(a), fb = files(b);
  for (const [p, e] of fa) {
    const f = fb.get(p);
    if (!f) out.push(`${p}: only in the accepted outcome`);
    else if (f.kind !== e.kind || f.sha256 !== e.sha256 || f.size !== e.size) out.push(`${p}: ${e.kind} sha256 ${short(e.sha256)} vs ${f.kind} sha256 ${short(f.sha256)}`);
  }
  for (const p of fb.keys()) if (!fa.has(p)) out.push(`${p}: only in the dissenting outcome`);
  return out;
}

/** Differences between the page's tally and canon's (reasons' wording aside). */
export function compareTallies(mine, theirs) {
  const diffs = [];
  const walk = (a, b, path) => {
    if (typeof a === 'number' || typeof b === 'number' || typeof a === 'bigint' || typeof b === 'bigint') {
      if (Number(a) !== Number(b)) diffs.push(`${path}: this page ${a}, canon ${b}`);
      return;
    }
    if (Array.isArray(a) || Array.isArray(b)) {
      if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) {
        diffs.push(`${path}: this page has ${Array.isArray(a) ? a.length : 'none'}, canon ${Array.isArray(b) ? b.length : 'none'}`);
        return;
      }
      a.forEach((x, i) => walk(x, b[i], `${path}[${i}]`));
      return;
    }
    if (a && b && typeof a === 'object' && typeof b === 'object') {
      for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) if (k !== 'reason') walk(a[k], b[k], path ? `${path}.${k}` : k);
      return;
    }
    if (a !== b) diffs.push(`${path}: this page ${JSON.stringify(a)}, canon ${JSON.stringify(b)}`);
  };
  walk(JSON.parse(JSON.stringify(mine, (k, v) => (typeof v === 'bigint' ? Number(v) : v))), theirs, '');
  return diffs;
}

/**
 * Renders tally `t` (from verify.js's `tally`) into `root`. `theirs`: canon's
 * tally to compare with, or null; `theirsLabel`: whose it is; `links`: per
 * receipt, a URL or an `<a>`'s attributes ({ href, download }) for its name.
 */
export function renderTally(root, t, { theirs = null, theirsLabel = "the server's tally", links = null } = {}) {
  root.replaceChildren();
  const verdict = el('p', { class: `verdict ${t.verdict}`, id: 'verdict', 'data-verdict': t.verdict }, el('span', { 'aria-hidden': 'true', text: ICON[t.verdict] + ' ' }), verdictText(t));
  root.append(el('h2', { text: 'Verdict' }), verdict);
  const nValid = t.checked.filter((c) => c.ok).length;
  root.append(el('p', { class: 'note', id: 'verified-count', text: `This page verified ${nValid} of ${t.checked.length} receipts itself (ed25519 signatures, node ids, statements, digests) and computed this verdict from them.` }));
  if (theirs) {
    const diffs = compareTallies(t, theirs);
    if (diffs.length === 0) root.append(el('p', { class: 'agree', id: 'comparison', 'data-agrees': 'true', text: `${theirsLabel[0].toUpperCase()}${theirsLabel.slice(1)} says the same (verdict ${theirs.verdict}).` }));
    else {
      root.append(
        el(
          'div',
          { class: 'discrepancy', id: 'comparison', role: 'alert', 'data-agrees': 'false' },
          el('h3', { text: `⚠ ${theirsLabel[0].toUpperCase()}${theirsLabel.slice(1)} differs from what this page verified` }),
          el('p', { text: `It says ${String(theirs.verdict).toUpperCase()}; the receipts verified here say ${t.verdict.toUpperCase()}. Trust this page's verdict, not the other one.` }),
          el('ul', {}, diffs.slice(0, 20).map((d) => el('li', { text: d }))),
        ),
      );
    }
  }

  const p = t.policy;
  root.append(
    el('h2', { text: 'Policy' }),
    el(
      'dl',
      { class: 'policy' },
      el('dt', { text: 'job' }),
      el('dd', { class: 'mono', text: t.job ?? 'none (no valid receipt)' }),
      el('dt', { text: 'trust' }),
      el('dd', { text: p.implicit ? 'no policy given: every node that signed a valid receipt, weight 1 each' : 'the nodes the policy lists, by weight' }),
      el('dt', { text: 'quorum' }),
      el('dd', { text: `min_quorum ${p.min_quorum}, threshold ${fixed(p.threshold)} of total trusted weight ${fixed(t.total_weight)}${p.credibility ? ', weighted by credibility' : ''}` }),
    ),
  );

  root.append(el('h2', { text: 'Outcomes' }));
  if (t.groups.length === 0) root.append(el('p', { text: 'No valid votes.' }));
  else {
    const table = el('table', { class: 'groups' }, el('caption', { text: 'Outcome groups, heaviest first' }));
    table.append(el('thead', {}, el('tr', {}, ['', 'outcome', 'termination', 'engine', 'nodes', 'trust'].map((h) => el('th', { scope: 'col', text: h })))));
    const body = el('tbody');
    for (const g of t.groups) {
      const acc = g.outcome === t.accepted;
      body.append(
        el(
          'tr',
          { class: acc ? 'accepted' : null, 'data-outcome': g.outcome },
          el('td', {}, acc ? el('span', { title: 'accepted', text: '✔ accepted' }) : ''),
          el('td', { class: 'mono', title: g.outcome, text: short(g.outcome) }),
          el('td', { text: g.termination }),
          el('td', { text: g.engines.map((e) => `canon ${e.canon} ABI ${e.determinism_abi}`).join(', ') }),
          el('td', {}, g.votes.map((v, i) => [i ? ', ' : '', el('span', { class: 'node', title: v.node, text: v.weight > 0 ? label(v) : `${label(v)} (weight 0)` })])),
          el('td', {}, trustBar(g.score, p.threshold)),
        ),
      );
    }
    table.append(body);
    root.append(table);
  }

  const winner = t.groups.find((g) => g.outcome === t.accepted);
  if (t.dissenters.length) {
    const list = el('ul', { id: 'dissenters' });
    for (const d of t.dissenters) {
      const vote = t.groups.flatMap((g) => g.votes).find((v) => v.node === d.node);
      const diff = vote && winner ? outcomeDiff(winner.votes[0].receipt, vote.receipt) : [];
      list.append(el('li', {}, el('strong', { class: 'node', title: d.node, text: d.name ?? shortId(d.node) }), ' dissents', diff.length ? el('ul', { class: 'diff' }, diff.map((x) => el('li', { text: x }))) : ''));
    }
    root.append(el('h2', { text: 'Dissenters' }), list);
  }
  if (t.equivocators.length) {
    root.append(el('h2', { text: 'Equivocators' }), el('p', { text: 'Signed different outcomes for this job on one engine; their votes are void.' }), el('ul', {}, t.equivocators.map((e) => el('li', { class: 'node', title: e.node, text: e.name ?? shortId(e.node) }))));
  }

  root.append(el('h2', { text: 'Receipts' }));
  const aside = new Map(t.set_aside.map((a) => [a.source, a]));
  const rt = el('table', { class: 'receipts', id: 'receipts' }, el('caption', { text: 'Every receipt, as this page verified it' }));
  rt.append(el('thead', {}, el('tr', {}, ['receipt', 'node', 'signature and statement', 'counted'].map((h) => el('th', { scope: 'col', text: h })))));
  const rb = el('tbody');
  t.checked.forEach((c, i) => {
    const a = aside.get(c.source);
    const node = c.ok ? c.receipt.node : c.node;
    rb.append(
      el(
        'tr',
        { class: c.ok ? 'valid' : 'invalid', 'data-valid': String(c.ok), 'data-code': c.ok ? 'ok' : c.code },
        el('td', {}, links?.[i] ? el('a', typeof links[i] === 'string' ? { href: links[i], text: c.source } : { ...links[i], text: c.source }) : c.source),
        el('td', { class: 'node', title: node ?? '', text: node ? shortId(node) : '-' }),
        el('td', {}, c.ok ? el('span', { class: 'ok', text: '✔ valid' }) : el('span', { class: 'bad', text: `✖ invalid: ${c.code}` }), c.ok ? '' : el('div', { class: 'reason', text: c.message })),
        el('td', { text: a ? (c.ok ? `no: ${a.code}` : 'no') : 'yes' }),
      ),
    );
  });
  rt.append(rb);
  root.append(rt);
}
