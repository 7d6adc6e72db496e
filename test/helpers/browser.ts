// Headless Chromium for renderer tests (SVG flame graph, HTML report), through playwright-core
// driving the system browser: no browser download, no network.
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { TestContext } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface BrowserSession {
  browser: Browser;
  context: BrowserContext;
  /** A page opened in `context`; more via `newPage()`. */
  page: Page;
  newPage(): Promise<Page>;
  /** Console messages of type "error" and uncaught page errors, from every page, in order. */
  errors: string[];
  /** Every dialog (alert, confirm, prompt, beforeunload) any page opened. Each is dismissed,
   *  except that a prompt is accepted with the next answer queued by `answerPrompt`. */
  dialogs: Array<{ type: string; message: string }>;
  /** Queue `text` as the answer to the next `prompt()` any page opens. */
  answerPrompt(text: string): void;
}

interface Watch {
  errors: string[];
  dialogs: Array<{ type: string; message: string }>;
  answers: string[];
}

function watch(page: Page, s: Watch): Page {
  page.on('console', (m) => {
    if (m.type() === 'error') s.errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => s.errors.push(`pageerror: ${e.message}`));
  page.on('dialog', (d) => {
    s.dialogs.push({ type: d.type(), message: d.message() });
    // Never leave a dialog open: the page would block.
    const answer = d.type() === 'prompt' ? s.answers.shift() : undefined;
    (answer !== undefined ? d.accept(answer) : d.dismiss()).catch(() => {});
  });
  return page;
}

/**
 * Runs `fn` with a fresh headless Chromium, closed afterwards. Playwright's `launch` gives the
 * browser a fresh temporary profile directory and deletes it on close (it refuses an explicit
 * `--user-data-dir`; that is `launchPersistentContext`'s job).
 * Skips the test, saying why, only when /usr/bin/chromium is absent.
 */
export async function withBrowser(t: TestContext, fn: (s: BrowserSession) => Promise<void>): Promise<void> {
  if (!existsSync(CHROMIUM_PATH)) {
    const why = `${CHROMIUM_PATH} not found: install Debian's chromium package to run browser tests`;
    console.log(`# skip: ${why}`);
    t.skip(why);
    return;
  }
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30_000,
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const session: Watch = { errors: [], dialogs: [], answers: [] };
    const newPage = async () => watch(await context.newPage(), session);
    const page = await newPage();
    const answerPrompt = (text: string) => void session.answers.push(text);
    await fn({ browser, context, page, newPage, errors: session.errors, dialogs: session.dialogs, answerPrompt });
  } finally {
    await browser?.close().catch(() => {});
  }
}

/** Opens a local file (SVG, HTML) in `page` and waits for its load event. */
export async function openFile(page: Page, path: string): Promise<void> {
  await page.goto(pathToFileURL(path).href, { waitUntil: 'load' });
}
