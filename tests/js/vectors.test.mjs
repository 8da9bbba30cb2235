// refimpl's known-answer vectors against the JavaScript module, under Node's test runner (`node --test tests/js/`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CHECKED_VECTORS, checkVectors } from '../../refimpl/web/static/conformance.mjs';

const dir = new URL('../../refimpl/testing/vectors/', import.meta.url);

for (const name of CHECKED_VECTORS) {
  test(`known-answer vectors: ${name}.json`, async () => {
    const doc = JSON.parse(readFileSync(new URL(`${name}.json`, dir), 'utf8'));
    const res = await checkVectors(name, doc);
    assert.deepEqual(res.failures, [], `${res.failures.length} of ${res.checked} checks failed`);
    assert.ok(res.checked > 0, 'no check ran');
  });
}
