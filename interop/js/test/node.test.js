// Ice for JavaScript on Node against omero-sessiond over tcp, in encodings 1.0 and 1.1.
// Run: node --test interop/js/test/   (after npm ci in interop/js and cargo build --bins)
"use strict";
const {after, before, describe, test} = require("node:test");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const {USERS, generateOmero, generatedFiles, startServer} = require("../lib/harness");
const {scenarios, names} = require("../lib/scenarios");

let server;
let env;
let generated;

before(async () => {
    generated = fs.mkdtempSync(path.join(os.tmpdir(), "omero-slice2js-"));
    const modules = generateOmero(generated);
    // The generated files and the test share one "ice" package (one module registry).
    const {Ice, Glacier2} = require(path.join(modules, "ice"));
    // slice/omero/cmd/API.ice uses Glacier2::Session without including Glacier2/Session.ice
    // itself (OMERO's own copy includes it), so slice2js emits no require for Glacier2 there and
    // the generated code reads a global. Browsers have that global from Glacier2.js; Node
    // needs it set.
    global.Glacier2 = Glacier2;
    let omero;
    for (const file of generatedFiles(modules)) {
        omero = require(file).omero;
    }
    env = {Ice, Glacier2, omero};
    server = await startServer();
});

after(async () => {
    if (server) {
        await server.stop();
    }
    if (generated) {
        fs.rmSync(generated, {recursive: true, force: true});
    }
});

for (const encoding of ["1.0", "1.1"]) {
    describe(`tcp, encoding ${encoding}`, () => {
        for (const name of names()) {
            test(name, async () => {
                const all = scenarios({
                    ...env,
                    endpoint: `tcp -h 127.0.0.1 -p ${server.ports.tcp} -t 60000`,
                    encoding,
                    user: "alice",
                    password: USERS.alice,
                    otherUser: "bob",
                    otherPassword: USERS.bob,
                });
                const s = all.find(x => x.name === name);
                try {
                    await s.run();
                } catch (e) {
                    e.message += `\n--- server log tail ---\n${server.logTail()}`;
                    throw e;
                }
            });
        }
    });
}
