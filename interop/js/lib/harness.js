// Starts omero-sessiond for the JavaScript tests and generates the omero classes with slice2js.
//
// The binary is $OMERO_SESSIOND_BIN, else $CARGO_TARGET_DIR/debug/omero-sessiond, else
// <repo>/target/debug/omero-sessiond. Each server gets a temporary data directory and free
// ports on 127.0.0.1.
"use strict";
const childProcess = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

const REPO = path.resolve(__dirname, "..", "..", "..");
const JS_DIR = path.resolve(__dirname, "..");
const USERS = {alice: "alicepw", bob: "bobpw"};

function binary() {
    if (process.env.OMERO_SESSIOND_BIN) {
        return process.env.OMERO_SESSIOND_BIN;
    }
    const target = process.env.CARGO_TARGET_DIR || path.join(REPO, "target");
    return path.join(target, "debug", "omero-sessiond");
}

function run(cmd, args, input) {
    const res = childProcess.spawnSync(cmd, args, {input, encoding: "utf8", timeout: 300000});
    if (res.error) {
        throw new Error(`${cmd}: ${res.error.message}`);
    }
    if (res.status !== 0) {
        throw new Error(`${cmd} ${args.join(" ")} failed (${res.status}):\n${res.stdout}\n${res.stderr}`);
    }
    return res;
}

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.on("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const {port} = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

function waitForPort(port, proc) {
    const deadline = Date.now() + 60000;
    return new Promise((resolve, reject) => {
        const attempt = () => {
            if (proc.exitCode !== null) {
                reject(new Error(`omero-sessiond exited with ${proc.exitCode}`));
                return;
            }
            const sock = net.connect(port, "127.0.0.1");
            sock.on("connect", () => {
                sock.destroy();
                resolve();
            });
            sock.on("error", () => {
                sock.destroy();
                if (Date.now() > deadline) {
                    reject(new Error(`omero-sessiond did not listen on ${port}`));
                } else {
                    setTimeout(attempt, 100);
                }
            });
        };
        attempt();
    });
}

function serveSupports(flag) {
    return run(binary(), ["serve", "--help"]).stdout.includes(flag);
}

async function startServer() {
    if (!fs.existsSync(binary())) {
        throw new Error(`${binary()} is missing: cargo build --bins, or set OMERO_SESSIOND_BIN`);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "omero-sessiond-js-"));
    const data = path.join(dir, "data");
    for (const [name, pw] of Object.entries(USERS)) {
        run(binary(), ["user", "add", name, "--password-stdin", "--data", data], pw);
    }
    const ports = {tcp: await freePort(), ssl: await freePort()};
    if (serveSupports("--ws")) {
        ports.ws = await freePort();
        ports.wss = await freePort();
    }
    const args = ["serve", "--data", data, "--https", "off"];
    for (const [kind, port] of Object.entries(ports)) {
        args.push(`--${kind}`, `127.0.0.1:${port}`);
    }
    const logPath = path.join(dir, "server.log");
    const log = fs.openSync(logPath, "w");
    const proc = childProcess.spawn(binary(), args, {stdio: ["ignore", log, log]});
    // A test process that dies early must not leave the server running.
    const reap = () => proc.exitCode === null && proc.kill("SIGTERM");
    process.once("exit", reap);
    for (const port of Object.values(ports)) {
        await waitForPort(port, proc);
    }
    return {
        ports,
        logPath,
        logTail: () => fs.readFileSync(logPath, "utf8").slice(-4000),
        async stop() {
            process.removeListener("exit", reap);
            if (proc.exitCode === null) {
                const exited = new Promise(resolve => proc.once("exit", resolve));
                proc.kill("SIGTERM");
                await exited;
            }
            fs.closeSync(log);
            fs.rmSync(dir, {recursive: true, force: true});
        },
    };
}

// slice2js writes one flat directory per run, so each slice/omero directory gets its own run
// into the matching directory. The output sits in <out>/node_modules/omero so that the
// generated require("omero/...") calls resolve, with the npm "ice" package linked beside it.
// slice/Ice and slice/Glacier2 are not loaded: the ice package carries those modules itself.
function generateOmero(out) {
    const slice = path.join(REPO, "slice");
    const modules = path.join(out, "node_modules");
    const dirs = [];
    const walk = d => {
        dirs.push(d);
        for (const e of fs.readdirSync(path.join(slice, d), {withFileTypes: true})) {
            if (e.isDirectory()) {
                walk(path.join(d, e.name));
            }
        }
    };
    walk("omero");
    for (const d of dirs) {
        const files = fs.readdirSync(path.join(slice, d)).filter(f => f.endsWith(".ice"))
            .map(f => path.join(slice, d, f));
        if (files.length === 0) {
            continue;
        }
        const dest = path.join(modules, d);
        fs.mkdirSync(dest, {recursive: true});
        run("slice2js", ["-I", slice, "--output-dir", dest, ...files]);
    }
    fs.symlinkSync(path.join(JS_DIR, "node_modules", "ice"), path.join(modules, "ice"), "dir");
    return modules;
}

// Every generated file, as OMERO's own bundles do: API.js alone reaches only what it includes,
// and ServicesF.ice declares IAdmin and ISession without defining them.
function generatedFiles(modules) {
    const out = [];
    const walk = d => {
        for (const e of fs.readdirSync(d, {withFileTypes: true}).sort((a, b) => a.name.localeCompare(b.name))) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) {
                walk(p);
            } else if (e.name.endsWith(".js")) {
                out.push(p);
            }
        }
    };
    walk(path.join(modules, "omero"));
    return out;
}

module.exports = {REPO, JS_DIR, USERS, binary, startServer, generateOmero, generatedFiles};
