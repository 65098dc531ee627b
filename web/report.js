// The static report's page: verifies the embedded receipts with verify.js,
// tallies them under the embedded policy, shows the result with render.js
// and compares it with the tally `canon quorum` embedded. Inlined after
// verify.js and render.js in one module (a file:// page cannot import).

const report = JSON.parse(document.getElementById('canon-report').textContent);
const root = document.getElementById('tally');
const bytesOf = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

function unverified(message) {
  root.replaceChildren(
    el('h2', { text: 'Verdict' }),
    el('p', { class: 'verdict unverified', id: 'verdict', 'data-verdict': 'unverified', text: `NOT VERIFIED: ${message}` }),
    el('p', { class: 'note', text: `canon quorum said ${String(report.tally?.verdict).toUpperCase()} when it wrote this report; this page could not check it, so it does not show it as verified.` }),
  );
}

(async () => {
  try {
    if (!(await supported())) {
      unverified('this browser offers no Ed25519 in WebCrypto here, so the page cannot check the signatures.');
      document.body.dataset.state = 'unsupported';
      return;
    }
    const receipts = report.receipts.map((r) => ({ source: r.source, bytes: bytesOf(r.envelope) }));
    const t = await tally(receipts, { policy: report.policy, expectedJob: report.expected_job, records: report.records });
    renderTally(root, t, { theirs: report.tally, theirsLabel: 'the tally canon quorum wrote into this report' });
    document.body.dataset.state = 'done';
  } catch (e) {
    unverified(`the page failed while verifying: ${e}`);
    document.body.dataset.state = 'error';
  }
})();
