// The page: joins the run named by the URL fragment and shows progress, the round, bytes sent and the latest
// global accuracy. Two kinds of run:
//   #token=T                                  this server's rounds (python -m refimpl web): the token enrols the tab
//   #aggregator=ws://HOST:PORT&client=K       python -m refimpl aggregator --protocol additive --insecure-plaintext,
//                                             as client-K, training on /data/client/K of this page server
// Optional: &delay=ms before uploading (in round &delay_round=r only, if given): a slow device, to show dropouts.
// The fragment is never sent in HTTP requests.

import { RoundClient } from './client.mjs';
import { AggregatorClient } from './netclient.mjs';
import { decode } from './wire.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
const token = params.get('token') ?? '';
const aggregator = params.get('aggregator');
const delay = Number(params.get('delay') ?? 0);
const delayRound = params.has('delay_round') ? Number(params.get('delay_round')) : null;

function human(n) {
  const units = ['B', 'kB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function log(line) {
  const el = $('log');
  el.textContent += `${new Date().toISOString().slice(11, 19)}  ${line}\n`;
  el.scrollTop = el.scrollHeight;
}

const state = { client: null, round: null, accuracy: null, uploaded: [], results: [], errors: [], done: false };
window.refimpl = { client: null, state }; // at once: tests and tools may poll it before the client exists
const ui = {
  onEvent(kind, ev) {
    if (client) $('bytes').textContent = human(client.bytesSent);
    switch (kind) {
      case 'open': $('status').textContent = 'connected; waiting for the configuration'; break;
      case 'joined':
        state.client = ev.client;
        $('client').textContent = ev.client;
        $('status').textContent = `joined the aggregator at ${aggregator} as client-${ev.client}; waiting for a round`;
        log(`joined ${aggregator} as client-${ev.client}`);
        break;
      case 'abort': state.errors.push(ev.message); log(`round aborted: ${ev.message}`); break;
      case 'welcome':
        state.client = ev.client;
        $('client').textContent = ev.client;
        $('status').textContent = `joined: ${ev.config.servers} aggregators, d = ${ev.config.length}, ` +
          `${ev.config.ring.name}, ${ev.samples} local samples`;
        log(`welcome: client ${ev.client}, task ${ev.task.kind}, ${ev.rounds} rounds`);
        break;
      case 'round':
        state.round = ev.round;
        $('round').textContent = ev.round;
        $('progress').value = 0;
        $('status').textContent = `round ${ev.round}: training locally`;
        break;
      case 'progress': $('progress').value = ev.fraction; break;
      case 'delay': state.delaying = ev.round; log(`round ${ev.round}: holding the upload for ${ev.ms} ms`); break;
      case 'trained': log(`round ${ev.round}: local loss ${ev.loss.toFixed(4)}, ${ev.clipped} coordinates clipped`); break;
      case 'uploaded':
        state.uploaded.push(ev.round);
        $('bytes').textContent = human(client.bytesSent);
        $('status').textContent = `round ${ev.round}: shares uploaded, waiting for the aggregate`;
        log(`round ${ev.round}: uploaded ${ev.bytes} bytes (encode + share ${ev.encode_share_ms.toFixed(1)} ms)`);
        break;
      case 'result':
        if (ev.accuracy !== null) state.accuracy = ev.accuracy;
        state.results.push(ev.round);
        if (ev.accuracy !== null) $('accuracy').textContent = `${(100 * ev.accuracy).toFixed(1)} %`;
        $('status').textContent = `round ${ev.round} done` + (ev.clients ? `: ${ev.clients.length} clients aggregated` : '');
        log(`round ${ev.round}: ` + (ev.clients ? `aggregate of clients ${ev.clients.join(', ')}; ` : 'aggregated; ') +
          (ev.accuracy !== null ? `accuracy ${(100 * ev.accuracy).toFixed(2)} %` : ''));
        break;
      case 'error': state.errors.push(ev.message); log(`error: ${ev.message}`); break;
      case 'done': state.done = true; $('status').textContent = 'all rounds done'; log('done'); break;
      case 'close':
        if (!state.done) $('status').textContent = `disconnected (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`;
        break;
      default: break;
    }
  },
};

async function fetchData(path) {
  const resp = await fetch(path);
  return resp.ok ? decode(new Uint8Array(await resp.arrayBuffer())) : null;
}

let client = null;
if (aggregator) {
  const id = Number(params.get('client'));
  const [data, test] = await Promise.all([fetchData(`/data/client/${id}`), fetchData('/data/test')]);
  client = new AggregatorClient(aggregator, id, data, { test, delayUploadMs: delay, delayRound, onEvent: ui.onEvent });
  window.refimpl.client = client;
  client.run().then((reason) => { state.done = true; $('status').textContent = `finished: ${reason}`; log(`finished: ${reason}`); })
    .catch((e) => { state.errors.push(e.message); $('status').textContent = `stopped: ${e.message}`; log(`error: ${e.message}`); });
} else {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  client = new RoundClient(url, token, { delayUploadMs: delay, delayRound, onEvent: ui.onEvent });
  window.refimpl.client = client;
  if (!token) $('status').textContent = 'no enrolment token in the URL (#token=...): open the link the server printed';
  else client.run();
}
