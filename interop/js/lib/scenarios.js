// The OMERO client sequence in Ice for JavaScript, shared by the Node tests and the browser page.
// Works as a CommonJS module (Node) and as a plain <script> (sets window.sessionScenarios).
//
// scenarios(env) returns [{name, run}] where env is
//   {Ice, Glacier2, omero, endpoint, encoding, user, password, otherUser, otherPassword}
// and each run() rejects with an Error saying what differed.
(function (root, factory) {
    if (typeof module === "object" && module.exports) {
        module.exports = factory();
    } else {
        root.sessionScenarios = factory();
    }
})(typeof self !== "undefined" ? self : this, function () {
    "use strict";
    const AGENT = "OMERO.js";

    function check(ok, what) {
        if (!ok) {
            throw new Error(what);
        }
    }

    function uuid4() {
        const hex = [];
        for (let i = 0; i < 32; i++) {
            hex.push(Math.floor(Math.random() * 16).toString(16));
        }
        const s = hex.join("");
        return `${s.slice(0, 8)}-${s.slice(8, 12)}-4${s.slice(13, 16)}-a${s.slice(17, 20)}-${s.slice(20, 32)}`;
    }

    function sleep(ms) {
        return new Promise(resolve => setTimeout(resolve, ms));
    }

    // Waits for what the server does after a connection is lost; bounded in count, generous
    // in time because the machine may be busy.
    async function waitFor(cond, what) {
        for (let i = 0; i < 400; i++) {
            if (await cond()) {
                return;
            }
            await sleep(50);
        }
        throw new Error(what);
    }

    function scenarios(env) {
        const {Ice, Glacier2, omero} = env;
        const open = [];

        function num(v) {
            return v instanceof Ice.Long ? v.toNumber() : v;
        }

        // An RType graph as plain values, so that round trips compare by value.
        function unwrap(v) {
            if (v === null || v === undefined) {
                return null;
            }
            if (v instanceof omero.RCollection) {
                return v.val.map(unwrap);
            }
            if (v instanceof omero.RMap) {
                const out = {};
                for (const k of [...v.val.keys()].sort()) {
                    out[k] = unwrap(v.val.get(k));
                }
                return out;
            }
            return num(v.val);
        }

        class Client {
            constructor() {
                const init = new Ice.InitializationData();
                init.properties = Ice.createProperties();
                init.properties.setProperty("Ice.ImplicitContext", "Shared");
                init.properties.setProperty("Ice.RetryIntervals", "-1");
                init.properties.setProperty("Ice.Default.EncodingVersion", env.encoding);
                init.properties.setProperty("Ice.Default.Router", "OMERO.Glacier2/router:" + env.endpoint);
                this.ic = Ice.initialize(init);
                this.clientUuid = uuid4();
                this.ic.getImplicitContext().put("omero.client.uuid", this.clientUuid);
                this.sf = null;
                open.push(this);
            }

            async router() {
                const r = await Glacier2.RouterPrx.checkedCast(this.ic.getDefaultRouter());
                check(r !== null, "the default router is not a Glacier2 router");
                return r;
            }

            loginContext() {
                const ctx = new Map(this.ic.getImplicitContext().getContext());
                ctx.set("omero.agent", AGENT);
                return ctx;
            }

            async createSession(name, pw) {
                const router = await this.router();
                const prx = await router.createSession(name, pw, this.loginContext());
                this.sf = await omero.api.ServiceFactoryPrx.checkedCast(prx);
                check(this.sf !== null, "the session proxy is not a ServiceFactory");
                return this;
            }

            get sessionUuid() {
                return this.sf.ice_getIdentity().name;
            }

            async closeSession() {
                try {
                    const router = await Glacier2.RouterPrx.uncheckedCast(this.ic.getDefaultRouter());
                    await router.destroySession();
                } catch (e) {
                    // the session or the connection may be gone already
                }
                await this.ic.destroy();
            }
        }

        const login = (name, pw) => new Client().createSession(name, pw);
        const join = uuid => login(uuid, uuid);

        async function expectJoinRefused(uuid) {
            try {
                await join(uuid);
            } catch (e) {
                check(e instanceof Glacier2.PermissionDeniedException, "join refused with " + e);
                check(e.reason.includes(uuid), "the refusal does not name the session: " + e.reason);
                return;
            }
            throw new Error("joined the closed session " + uuid);
        }

        async function expectLoginRefused(name, pw) {
            try {
                await login(name, pw);
            } catch (e) {
                check(e instanceof Glacier2.PermissionDeniedException, "refused with " + e);
                check(!e.reason.includes(pw), "the refusal repeats the password");
                return;
            }
            throw new Error(`${name} logged in with a wrong password`);
        }

        async function dropConnection(c) {
            const con = await c.sf.ice_getConnection();
            await con.close(Ice.ConnectionClose.Forcefully);
            await c.ic.destroy();
        }

        const list = {
            async login_with_agent_and_client_uuid() {
                const c = await login(env.user, env.password);
                const id = c.sf.ice_getIdentity();
                check(id.category === "session-" + c.clientUuid, "factory category " + id.category);
                check(await c.sf.ice_isA("::Glacier2::Session"), "the factory is not a Glacier2::Session");
                // Later calls go through proxies the server made: they keep the client's encoding.
                const admin = await c.sf.getAdminService();
                const encodings = [c.ic.getDefaultRouter(), c.sf, admin]
                    .map(p => Ice.encodingVersionToString(p.ice_getEncodingVersion()));
                check(encodings.every(e => e === env.encoding), `encodings ${encodings}, wanted ${env.encoding}`);
                const svc = await c.sf.getSessionService();
                const mine = await svc.getMyOpenAgentSessions(AGENT);
                check(mine.some(s => s.uuid.val === c.sessionUuid), "session not listed under agent " + AGENT);
            },

            async callback_adapter_through_router() {
                const c = await login(env.user, env.password);
                const router = await c.router();
                const category = await router.getCategoryForClient();
                check(category.length > 0, "empty category for client");
                const oa = await c.ic.createObjectAdapterWithRouter("", router);
                class Callback extends omero.api.ClientCallback {
                    requestHeartbeat() {}
                    sessionClosed() {}
                    shutdownIn() {}
                }
                const prx = oa.add(new Callback(), new Ice.Identity(c.clientUuid, category));
                await c.sf.setCallback(omero.api.ClientCallbackPrx.uncheckedCast(prx));
                const ec = await (await c.sf.getAdminService()).getEventContext();
                check(ec.userName === env.user, "the factory is unusable after setCallback");
            },

            async event_context() {
                const c = await login(env.user, env.password);
                const ec = await (await c.sf.getAdminService()).getEventContext();
                check(ec.userName === env.user, "userName " + ec.userName);
                check(ec.sessionUuid === c.sessionUuid, "sessionUuid " + ec.sessionUuid);
                check(ec.isAdmin === false, "a plain user is admin");
            },

            async keep_alive() {
                const c = await login(env.user, env.password);
                const admin = await c.sf.getAdminService();
                check(await c.sf.keepAlive(admin) === true, "keepAlive(admin) is false");
                check(await c.sf.keepAlive(null) === false, "keepAlive(null) is true");
                const bogus = omero.api.ServiceInterfacePrx.uncheckedCast(c.ic.stringToProxy("x/unknown-service"));
                const mask = num(await c.sf.keepAllAlive([admin, bogus]));
                check(mask === 2, "keepAllAlive mask " + mask);
            },

            async session_model_object() {
                const c = await login(env.user, env.password);
                const svc = await c.sf.getSessionService();
                const s = await svc.getSession(c.sessionUuid);
                check(s instanceof omero.model.Session, "getSession gave " + s);
                check(s.uuid.val === c.sessionUuid, "uuid " + s.uuid.val);
                check(s.closed === null, "a fresh session is closed");
                check(s.userAgent.val === AGENT, "userAgent " + (s.userAgent && s.userAgent.val));
                check(s.owner instanceof omero.model.Experimenter && s.owner.omeName.val === env.user, "owner");
                check(await svc.getReferenceCount(c.sessionUuid) === 1, "reference count");
            },

            async inputs_round_trip_rtypes() {
                const c = await login(env.user, env.password);
                const svc = await c.sf.getSessionService();
                const uuid = c.sessionUuid;
                const values = {
                    string: new omero.RString("h\u00e9llo"),
                    int: new omero.RInt(-7),
                    long: new omero.RLong(new Ice.Long(256, 0)),
                    bool: new omero.RBool(true),
                    double: new omero.RDouble(2.25),
                    list: new omero.RList([new omero.RInt(1), new omero.RString("two"),
                        new omero.RList([new omero.RLong(new Ice.Long(0, 3))])]),
                    map: new omero.RMap(new Map([["a", new omero.RInt(1)],
                        ["nested", new omero.RMap(new Map([["b", new omero.RString("c")]]))]])),
                };
                for (const [k, v] of Object.entries(values)) {
                    await svc.setInput(uuid, k, v);
                }
                for (const [k, v] of Object.entries(values)) {
                    const back = JSON.stringify(unwrap(await svc.getInput(uuid, k)));
                    check(back === JSON.stringify(unwrap(v)), `input ${k} came back as ${back}`);
                }
                const keys = (await svc.getInputKeys(uuid)).sort();
                check(JSON.stringify(keys) === JSON.stringify(Object.keys(values).sort()), "input keys " + keys);
                check(await svc.getInput(uuid, "absent") === null, "an absent input is not null");
                await svc.setInput(uuid, "int", null);
                check(await svc.getInput(uuid, "int") === null, "the input was not removed");
            },

            async detach_drop_connection_rejoin() {
                const c = await login(env.user, env.password);
                const uuid = c.sessionUuid;
                await c.sf.detachOnDestroy();
                await dropConnection(c);
                const j = await join(uuid);
                check(j.sessionUuid === uuid, "joined a different session");
                const svc = await j.sf.getSessionService();
                await waitFor(async () => await svc.getReferenceCount(uuid) === 1,
                    "the detached reference was not given back");
                await j.sf.closeOnDestroy();
                await j.closeSession();
                await expectJoinRefused(uuid);
            },

            async close_session_then_join_refused() {
                const c = await login(env.user, env.password);
                const uuid = c.sessionUuid;
                const svc = await c.sf.getSessionService();
                const bare = new omero.model.Session();
                bare.uuid = new omero.RString(uuid);
                check(await svc.closeSession(bare) === -2, "closeSession of the last reference");
                await expectJoinRefused(uuid);
            },

            async wrong_password_refused() {
                await expectLoginRefused(env.user, "not-" + env.password);
                await expectLoginRefused("no-such-user", env.password);
            },
        };

        async function closeAll() {
            for (const c of open.splice(0)) {
                try {
                    await c.closeSession();
                } catch (e) {
                    // already destroyed
                }
            }
        }

        return Object.entries(list).map(([name, fn]) => ({
            name,
            async run() {
                try {
                    await fn();
                } finally {
                    await closeAll();
                }
            },
        }));
    }

    return {scenarios, names: () => scenarios({Ice: null, omero: null}).map(s => s.name)};
});
