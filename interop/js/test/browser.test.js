// Ice for JavaScript in a real headless Chromium against omero-sessiond over ws and wss.
// The test serves the page itself on 127.0.0.1, drives Debian's /usr/bin/chromium with
// playwright-core, fails on any console error, and saves a screenshot of the result page.
"use strict";
const {after, before, describe, test} = require("node:test");
const assert = require("node:assert");
const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");
const path = require("node:path");

const {JS_DIR, USERS, binary, generateOmero, generatedFiles, startServer} = require("../lib/harness");
const {names} = require("../lib/scenarios");

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const ICE_LIB = path.join(JS_DIR, "node_modules", "ice", "lib");

function wsServed() {
    const res = require("node:child_process").spawnSync(binary(), ["serve", "--help"], {encoding: "utf8"});
    return res.status === 0 && res.stdout.includes("--ws");
}

// Generated files as <script> tags, each after the files it requires: in a page every module
// must be loaded before one that uses it.
function scriptOrder(modules) {
    const files = generatedFiles(modules);
    const byName = new Map(files.map(f => [path.relative(modules, f).replace(/\.js$/, ""), f]));
    const done = new Set();
    const order = [];
    const visit = name => {
        if (done.has(name)) {
            return;
        }
        done.add(name);
        const text = fs.readFileSync(byName.get(name), "utf8");
        for (const m of text.matchAll(/require\("(omero\/[^"]+)"\)/g)) {
            if (byName.has(m[1])) {
                visit(m[1]);
            }
        }
        order.push(name);
    };
    for (const name of [...byName.keys()].sort()) {
        visit(name);
    }
    return order;
}

function servePage(modules) {
    const scripts = ["/ice/Ice.js", "/ice/Glacier2.js", ...scriptOrder(modules).map(n => `/gen/${n}.js`)]
        .map(src => `<script src="${src}"></script>`).join("\n");
    const index = fs.readFileSync(path.join(JS_DIR, "page", "index.html"), "utf8").replace("<!--SCRIPTS-->", scripts);
    const roots = {"/ice/": ICE_LIB, "/gen/": modules, "/lib/": path.join(JS_DIR, "lib"), "/page/": path.join(JS_DIR, "page")};
    const srv = http.createServer((req, res) => {
        const url = new URL(req.url, "http://127.0.0.1");
        if (url.pathname === "/" || url.pathname === "/index.html") {
            res.writeHead(200, {"content-type": "text/html; charset=utf-8"});
            res.end(index);
            return;
        }
        if (url.pathname === "/favicon.ico") {
            res.writeHead(204);
            res.end();
            return;
        }
        for (const [prefix, dir] of Object.entries(roots)) {
            if (url.pathname.startsWith(prefix)) {
                const file = path.resolve(dir, "." + url.pathname.slice(prefix.length - 1));
                if (file.startsWith(path.resolve(dir) + path.sep) && file.endsWith(".js") && fs.existsSync(file)) {
                    res.writeHead(200, {"content-type": "text/javascript; charset=utf-8"});
                    fs.createReadStream(file).pipe(res);
                    return;
                }
            }
        }
        res.writeHead(404);
        res.end();
    });
    return new Promise(resolve => srv.listen(0, "127.0.0.1", () => resolve(srv)));
}

// A skipped suite does not show in node's counts; a skipped test does.
if (!wsServed()) {
    test("headless Chromium over ws and wss", {skip: "this omero-sessiond has no --ws/--wss listener"}, () => {});
} else {
    describe("headless Chromium", () => {
        let server;
        let page;
        let browser;
        let generated;
        let userData;
        const runs = new Map();

        before(async () => {
            if (!fs.existsSync(CHROMIUM)) {
                throw new Error(`${CHROMIUM} is missing: run interop/setup (Debian's chromium)`);
            }
            generated = fs.mkdtempSync(path.join(os.tmpdir(), "omero-slice2js-page-"));
            const modules = generateOmero(generated);
            page = await servePage(modules);
            server = await startServer();
            const {chromium} = require("playwright-core");
            userData = fs.mkdtempSync(path.join(os.tmpdir(), "omero-chromium-"));
            browser = await chromium.launchPersistentContext(userData, {
                executablePath: CHROMIUM,
                headless: true,
                args: CHROMIUM_ARGS,
                // The server's certificate is self-signed.
                ignoreHTTPSErrors: true,
            });
        });

        after(async () => {
            if (browser) {
                await browser.close();
            }
            if (page) {
                page.close();
            }
            if (server) {
                await server.stop();
            }
            for (const dir of [generated, userData]) {
                if (dir) {
                    fs.rmSync(dir, {recursive: true, force: true});
                }
            }
        });

        // One page load per transport and encoding runs every scenario; the subtests report them.
        async function pageRun(transport, encoding) {
            const key = `${transport}-${encoding}`;
            if (!runs.has(key)) {
                runs.set(key, (async () => {
                    const tab = await browser.newPage();
                    const errors = [];
                    tab.on("console", msg => {
                        if (msg.type() === "error") {
                            errors.push(msg.text());
                        }
                    });
                    tab.on("pageerror", err => errors.push(String(err)));
                    const q = new URLSearchParams({
                        transport, encoding, host: "127.0.0.1", port: String(server.ports[transport]),
                        user: "alice", password: USERS.alice, otherUser: "bob", otherPassword: USERS.bob,
                    });
                    await tab.goto(`http://127.0.0.1:${page.address().port}/?${q}`);
                    await tab.waitForFunction(() => window.testResults !== undefined, null, {timeout: 600000});
                    const results = await tab.evaluate(() => window.testResults);
                    const shot = path.join(os.tmpdir(), `omero-sessiond-browser-${key}.png`);
                    await tab.screenshot({path: shot, fullPage: true});
                    console.log(`screenshot: ${shot}`);
                    await tab.close();
                    return {results, errors, shot};
                })());
            }
            return runs.get(key);
        }

        for (const transport of ["ws", "wss"]) {
            for (const encoding of ["1.0", "1.1"]) {
                describe(`${transport}, encoding ${encoding}`, () => {
                    for (const name of names()) {
                        test(name, async () => {
                            const {results} = await pageRun(transport, encoding);
                            const r = results.find(x => x.name === name);
                            assert.ok(r, `no result for ${name}`);
                            assert.strictEqual(r.status, "PASS", `${r.detail}\n--- server log tail ---\n${server.logTail()}`);
                        });
                    }
                    test("no console errors", async () => {
                        const {errors, shot} = await pageRun(transport, encoding);
                        assert.deepStrictEqual(errors, [], `console errors (screenshot ${shot})`);
                    });
                });
            }
        }
    });
}
