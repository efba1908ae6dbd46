// What the WeChat developer tools do to a mini-program before it runs: the
// ES modules of the SDK and of its <gateway-challenge> component become
// CommonJS ("ES6 to ES5"), the runtime's module system. The result is a
// project in a temporary directory, laid out like sdk/js.

import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const sdk = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../sdk/js');

function compileTree(dir) {
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) {
      compileTree(file);
    } else if (name.endsWith('.js')) {
      const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
        fileName: file,
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2018 },
      });
      writeFileSync(file, outputText);
    }
  }
}

/**
 * Builds the mini-program project; returns the paths the simulator loads
 * and `remove()`.
 */
export function buildProject() {
  const root = mkdtempSync(path.join(tmpdir(), 'portcullis-miniprogram-'));
  for (const part of ['src', 'miniprogram']) {
    cpSync(path.join(sdk, part), path.join(root, part), { recursive: true });
  }
  writeFileSync(path.join(root, 'package.json'), '{"type": "commonjs"}\n');
  compileTree(root);
  return {
    root,
    sdk: path.join(root, 'src/index.js'),
    component: path.join(root, 'miniprogram/gateway-challenge/index'),
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}
