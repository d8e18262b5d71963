// What OMERO Java's omero.client and the gateway do against omero-sessiond, written with the
// Ice 3.7 compat mapping and classes slice2java generated from the project's own slice/.
//
// Usage: java SessionClientTest TRANSPORT HOST PORT ENCODING USER PASSWORD OTHER_USER OTHER_PASSWORD
// TRANSPORT is tcp, ssl, ws or wss. Prints one line per scenario, "PASS name" or
// "FAIL name: why", then "N passed, N failed"; exits 1 when any scenario failed.
//
// The project's slice has no operations on classes, so the generated model and RType classes
// are concrete and their "protected" fields are read through reflection rather than through
// hand-written OMERO *I classes.

import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

public final class SessionClientTest {
    static final String AGENT = "OMERO.java";

    interface Scenario {
        void run() throws Exception;
    }

    final String transport;
    final String host;
    final int port;
    final String encoding;
    final String user;
    final String password;
    final String otherUser;
    final String otherPassword;
    final List<Client> open = new ArrayList<>();

    SessionClientTest(String[] args) {
        transport = args[0];
        host = args[1];
        port = Integer.parseInt(args[2]);
        encoding = args[3];
        user = args[4];
        password = args[5];
        otherUser = args[6];
        otherPassword = args[7];
    }

    public static void main(String[] args) {
        if (args.length != 8) {
            System.err.println("usage: SessionClientTest TRANSPORT HOST PORT ENCODING USER PASSWORD OTHER_USER OTHER_PASSWORD");
            System.exit(2);
        }
        SessionClientTest t = new SessionClientTest(args);
        Map<String, Scenario> scenarios = t.scenarios();
        int passed = 0;
        int failed = 0;
        for (Map.Entry<String, Scenario> e : scenarios.entrySet()) {
            try {
                e.getValue().run();
                System.out.println("PASS " + e.getKey());
                passed++;
            } catch (Throwable ex) {
                System.out.println("FAIL " + e.getKey() + ": " + describe(ex));
                ex.printStackTrace(System.err);
                failed++;
            } finally {
                t.closeAll();
            }
            System.out.flush();
        }
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    Map<String, Scenario> scenarios() {
        Map<String, Scenario> s = new LinkedHashMap<>();
        s.put("login_with_agent_and_client_uuid", this::loginWithAgentAndClientUuid);
        s.put("callback_adapter_through_router", this::callbackAdapterThroughRouter);
        s.put("event_context", this::eventContext);
        s.put("keep_alive", this::keepAlive);
        s.put("security_context", this::securityContext);
        s.put("session_model_object", this::sessionModelObject);
        s.put("inputs_round_trip_rtypes", this::inputsRoundTripRtypes);
        s.put("robject_holding_an_image", this::robjectHoldingAnImage);
        s.put("detach_drop_connection_rejoin", this::detachDropConnectionRejoin);
        s.put("lost_connection_in_close_mode_ends_session", this::lostConnectionInCloseMode);
        s.put("close_session_then_join_refused", this::closeSessionThenJoinRefused);
        s.put("wrong_password_refused", this::wrongPasswordRefused);
        s.put("join_with_username_not_uuid_refused", this::joinWithUsernameRefused);
        return s;
    }

    // ---- scenarios ----

    void loginWithAgentAndClientUuid() throws Exception {
        Client c = login(user, password);
        Ice.Identity id = c.sf.ice_getIdentity();
        check(id.category.equals("session-" + c.clientUuid), "factory category " + id.category);
        check(c.sf.ice_isA("::omero::api::ServiceFactory"), "factory is not a ServiceFactory");
        check(c.sf.ice_isA("::Glacier2::Session"), "factory is not a Glacier2::Session");
        // Every call after login goes through proxies the server made: they must keep the
        // client's encoding, or a 1.0 client would be switched to 1.1 behind its back.
        String routerEnc = Ice.Util.encodingVersionToString(c.router.ice_getEncodingVersion());
        String sfEnc = Ice.Util.encodingVersionToString(c.sf.ice_getEncodingVersion());
        String adminEnc = Ice.Util.encodingVersionToString(c.sf.getAdminService().ice_getEncodingVersion());
        check(routerEnc.equals(encoding) && sfEnc.equals(encoding) && adminEnc.equals(encoding),
                "encodings router " + routerEnc + ", factory " + sfEnc + ", admin " + adminEnc + ", wanted " + encoding);
        boolean found = false;
        for (omero.model.Session s : c.sf.getSessionService().getMyOpenAgentSessions(AGENT)) {
            found |= c.sessionUuid().equals(rstring(get(s, "uuid")));
        }
        check(found, "session not listed under agent " + AGENT);
        check(c.sf.getSessionService().getMyOpenAgentSessions("no-such-agent").length == 0,
                "sessions listed under an unknown agent");
    }

    void callbackAdapterThroughRouter() throws Exception {
        Client c = login(user, password);
        String category = c.router.getCategoryForClient();
        check(!category.isEmpty(), "empty category for client");
        Ice.ObjectAdapter oa = c.ic.createObjectAdapterWithRouter("omero.ClientCallback", c.router);
        oa.activate();
        Ice.Identity cbId = new Ice.Identity(c.clientUuid, category);
        Ice.ObjectPrx prx = oa.add(new Callback(), cbId);
        c.sf.setCallback(omero.api.ClientCallbackPrxHelper.uncheckedCast(prx));
        // The callback proxy carries the router's server endpoints, as Glacier2 clients' do.
        check(prx.ice_getIdentity().category.equals(category), "callback identity category");
        check(c.sf.getAdminService().getEventContext().userName.equals(user), "factory unusable after setCallback");
        c.sf.setCallback(null);
    }

    void eventContext() throws Exception {
        Client c = login(user, password);
        omero.sys.EventContext ec = c.sf.getAdminService().getEventContext();
        check(ec.userName.equals(user), "userName " + ec.userName);
        check(ec.sessionUuid.equals(c.sessionUuid()), "sessionUuid " + ec.sessionUuid + " vs " + c.sessionUuid());
        check(!ec.isAdmin, "a plain user is admin");
    }

    void keepAlive() throws Exception {
        Client c = login(user, password);
        omero.api.IAdminPrx admin = c.sf.getAdminService();
        c.sf.getSessionService();
        check(c.sf.keepAlive(admin), "keepAlive(admin) false");
        check(!c.sf.keepAlive(null), "keepAlive(null) true");
        check(Arrays.asList(c.sf.activeServices()).contains(admin.ice_getIdentity().name), "admin not active");
        omero.api.ServiceInterfacePrx bogus = omero.api.ServiceInterfacePrxHelper.uncheckedCast(
                c.ic.stringToProxy("x/unknown-service"));
        long mask = c.sf.keepAllAlive(new omero.api.ServiceInterfacePrx[] {admin, bogus});
        check(mask == 0b10, "keepAllAlive mask " + mask);
    }

    // The gateway reads the user's groups and sets one as the context of later calls.
    void securityContext() throws Exception {
        Client c = login(user, password);
        omero.model.IObject[] contexts = c.sf.getSecurityContexts();
        check(contexts.length > 0, "no security contexts");
        omero.model.IObject group = null;
        for (omero.model.IObject o : contexts) {
            if (o instanceof omero.model.ExperimenterGroup) {
                group = o;
            }
        }
        check(group != null, "no group among the security contexts");
        String name = rstring(get(group, "name"));
        omero.model.IObject previous = c.sf.setSecurityContext(group);
        check(previous instanceof omero.model.ExperimenterGroup, "previous context is " + previous);
        check(c.sf.getAdminService().getEventContext().groupName.equals(name), "group after setSecurityContext");
        try {
            c.sf.setSecurityContext(new omero.model.ExperimenterGroup());
            throw new AssertionError("a group without an id was accepted");
        } catch (omero.ApiUsageException e) {
            // expected, as OMERO answers
        }
    }

    void sessionModelObject() throws Exception {
        Client c = login(user, password);
        omero.model.Session s = c.sf.getSessionService().getSession(c.sessionUuid());
        check(c.sessionUuid().equals(rstring(get(s, "uuid"))), "getSession uuid");
        check(get(s, "closed") == null, "fresh session is closed");
        check(AGENT.equals(rstring(get(s, "userAgent"))), "userAgent " + rstring(get(s, "userAgent")));
        Object owner = get(s, "owner");
        check(owner instanceof omero.model.Experimenter, "owner is " + owner);
        check(user.equals(rstring(get(owner, "omeName"))), "owner omeName");
        check(c.sf.getSessionService().getReferenceCount(c.sessionUuid()) == 1, "reference count");
    }

    void inputsRoundTripRtypes() throws Exception {
        Client c = login(user, password);
        omero.api.ISessionPrx svc = c.sf.getSessionService();
        String uuid = c.sessionUuid();
        Map<String, omero.RType> values = new LinkedHashMap<>();
        values.put("string", new omero.RString("h\u00e9llo"));
        values.put("int", new omero.RInt(-7));
        values.put("long", new omero.RLong(1L << 40));
        values.put("bool", new omero.RBool(true));
        values.put("double", new omero.RDouble(2.25));
        values.put("float", new omero.RFloat(1.5f));
        values.put("time", new omero.RTime(1700000000000L));
        values.put("list", new omero.RList(new omero.RType[] {
            new omero.RInt(1), new omero.RString("two"), new omero.RList(new omero.RType[] {new omero.RLong(3)})}));
        Map<String, omero.RType> inner = new HashMap<>();
        inner.put("b", new omero.RList(new omero.RType[] {new omero.RString("c")}));
        Map<String, omero.RType> outer = new HashMap<>();
        outer.put("a", new omero.RInt(1));
        outer.put("nested", new omero.RMap(inner));
        values.put("map", new omero.RMap(outer));
        for (Map.Entry<String, omero.RType> e : values.entrySet()) {
            svc.setInput(uuid, e.getKey(), e.getValue());
            svc.setOutput(uuid, e.getKey(), e.getValue());
        }
        for (Map.Entry<String, omero.RType> e : values.entrySet()) {
            Object want = unwrap(e.getValue());
            check(want.equals(unwrap(svc.getInput(uuid, e.getKey()))), "input " + e.getKey() + " came back as " + unwrap(svc.getInput(uuid, e.getKey())));
            check(want.equals(unwrap(svc.getOutput(uuid, e.getKey()))), "output " + e.getKey());
        }
        check(new java.util.HashSet<>(Arrays.asList(svc.getInputKeys(uuid))).equals(values.keySet()), "input keys");
        Map<String, omero.RType> all = svc.getInputs(uuid);
        check(all.keySet().equals(values.keySet()), "getInputs keys");
        check(svc.getInput(uuid, "absent") == null, "absent input not null");
        svc.setInput(uuid, "int", null);
        check(svc.getInput(uuid, "int") == null, "input not removed");
    }

    void robjectHoldingAnImage() throws Exception {
        Client c = login(user, password);
        omero.api.ISessionPrx svc = c.sf.getSessionService();
        omero.model.Image image = new omero.model.Image();
        set(image, "id", new omero.RLong(42));
        set(image, "name", new omero.RString("cells.tif"));
        set(image, "loaded", true);
        svc.setInput(c.sessionUuid(), "img", new omero.RObject(image));
        Object back = get(svc.getInput(c.sessionUuid(), "img"), "val");
        check(back instanceof omero.model.Image, "RObject value is " + back);
        check("cells.tif".equals(rstring(get(back, "name"))), "image name");
        check(Long.valueOf(42).equals(unwrap((omero.RType) get(back, "id"))), "image id");
    }

    void detachDropConnectionRejoin() throws Exception {
        Client c = login(user, password);
        String uuid = c.sessionUuid();
        c.sf.detachOnDestroy();
        // Drop the connection under the client, as a crashed or disconnected program would.
        c.sf.ice_getCachedConnection().close(Ice.ConnectionClose.Forcefully);
        c.destroy();

        Client j = join(uuid);
        check(j.sessionUuid().equals(uuid), "joined a different session");
        check(j.sf.getAdminService().getEventContext().sessionUuid.equals(uuid), "event context of the join");
        check(rstring(get(j.sf.getSessionService().getSession(uuid), "uuid")).equals(uuid), "getSession after join");
        waitFor(() -> j.sf.getSessionService().getReferenceCount(uuid) == 1, "detached reference not given back");
        // Closing ends it for everybody.
        j.sf.closeOnDestroy();
        j.closeSession();
        expectJoinRefused(uuid);
    }

    void lostConnectionInCloseMode() throws Exception {
        Client watcher = login(otherUser, otherPassword);
        Client c = login(user, password);
        String uuid = c.sessionUuid();
        check(watcher.sf.getSessionService().getReferenceCount(uuid) == 1, "reference count before");
        c.sf.ice_getCachedConnection().close(Ice.ConnectionClose.Forcefully);
        c.destroy();
        waitFor(() -> {
            try {
                watcher.sf.getSessionService().getReferenceCount(uuid);
                return false;
            } catch (omero.RemovedSessionException e) {
                return true;
            }
        }, "session survived losing its only connection");
        expectJoinRefused(uuid);
    }

    void closeSessionThenJoinRefused() throws Exception {
        Client c = login(user, password);
        String uuid = c.sessionUuid();
        omero.model.Session bare = new omero.model.Session();
        set(bare, "uuid", new omero.RString(uuid));
        Client j = join(uuid);
        check(j.sf.getSessionService().getReferenceCount(uuid) == 2, "two references after join");
        // Each closeSession gives back one reference; the last one ends the session (-2).
        int first = c.sf.getSessionService().closeSession(bare);
        check(first == 1, "first closeSession returned " + first);
        int second = c.sf.getSessionService().closeSession(bare);
        check(second == -2, "second closeSession returned " + second);
        expectJoinRefused(uuid);
    }

    void wrongPasswordRefused() throws Exception {
        Client c = connect();
        try {
            c.router.createSession(user, "not-" + password, c.loginContext());
            throw new AssertionError("wrong password accepted");
        } catch (Glacier2.PermissionDeniedException e) {
            check(!e.reason.contains("not-" + password), "reason repeats the password");
        }
        Client d = connect();
        try {
            d.router.createSession("no-such-user", password, d.loginContext());
            throw new AssertionError("unknown user accepted");
        } catch (Glacier2.PermissionDeniedException e) {
            // expected
        }
    }

    void joinWithUsernameRefused() throws Exception {
        Client c = login(user, password);
        Client d = connect();
        try {
            d.router.createSession(user, c.sessionUuid(), d.loginContext());
            throw new AssertionError("user name with a session uuid as password accepted");
        } catch (Glacier2.PermissionDeniedException e) {
            // expected: joining takes the uuid as both name and password
        }
    }

    // ---- the client, as omero.client sets it up ----

    final class Client {
        final Ice.Communicator ic;
        final String clientUuid = UUID.randomUUID().toString();
        final Glacier2.RouterPrx router;
        omero.api.ServiceFactoryPrx sf;

        Client() {
            Ice.InitializationData init = new Ice.InitializationData();
            init.properties = Ice.Util.createProperties();
            Ice.Properties p = init.properties;
            p.setProperty("Ice.ImplicitContext", "Shared");
            p.setProperty("Ice.RetryIntervals", "-1");
            p.setProperty("Ice.Default.EncodingVersion", encoding);
            p.setProperty("Ice.Default.Router", "OMERO.Glacier2/router:" + endpoint());
            p.setProperty("Ice.Default.InvocationTimeout", "60000");
            if (transport.equals("ssl") || transport.equals("wss")) {
                p.setProperty("Ice.Plugin.IceSSL", "IceSSL.PluginFactory");
                // The server's certificate is self-signed: verify nothing, as OMERO's
                // anonymous-cipher clients did.
                p.setProperty("IceSSL.VerifyPeer", "0");
                p.setProperty("IceSSL.TrustOnly.Client", "");
            }
            ic = Ice.Util.initialize(init);
            ic.getImplicitContext().put("omero.client.uuid", clientUuid);
            router = Glacier2.RouterPrxHelper.checkedCast(ic.getDefaultRouter());
            if (router == null) {
                throw new AssertionError("default router is not a Glacier2 router");
            }
        }

        String endpoint() {
            String ep = transport + " -h " + host + " -p " + port + " -t 60000";
            return transport.startsWith("ws") ? ep + " -r /" : ep;
        }

        Map<String, String> loginContext() {
            Map<String, String> ctx = new HashMap<>(ic.getImplicitContext().getContext());
            ctx.put("omero.agent", AGENT);
            return ctx;
        }

        void createSession(String name, String pw) throws Exception {
            Glacier2.SessionPrx prx = router.createSession(name, pw, loginContext());
            sf = omero.api.ServiceFactoryPrxHelper.checkedCast(prx);
            if (sf == null) {
                throw new AssertionError("session proxy is not a ServiceFactory");
            }
        }

        String sessionUuid() {
            return sf.ice_getIdentity().name;
        }

        void closeSession() {
            try {
                router.destroySession();
            } catch (Glacier2.SessionNotExistException | Ice.LocalException e) {
                // the session or the connection may already be gone
            }
            destroy();
        }

        void destroy() {
            ic.destroy();
        }
    }

    static final class Callback extends omero.api._ClientCallbackDisp {
        @Override
        public void requestHeartbeat(Ice.Current current) {
        }

        @Override
        public void sessionClosed(Ice.Current current) {
        }

        @Override
        public void shutdownIn(long milliseconds, Ice.Current current) {
        }
    }

    Client connect() {
        Client c = new Client();
        open.add(c);
        return c;
    }

    Client login(String name, String pw) throws Exception {
        Client c = connect();
        c.createSession(name, pw);
        return c;
    }

    Client join(String uuid) throws Exception {
        return login(uuid, uuid);
    }

    void expectJoinRefused(String uuid) throws Exception {
        Client c = connect();
        try {
            c.createSession(uuid, uuid);
            throw new AssertionError("joined the closed session " + uuid);
        } catch (Glacier2.PermissionDeniedException e) {
            check(e.reason.contains(uuid), "refusal does not name the session: " + e.reason);
        }
    }

    void closeAll() {
        for (Client c : open) {
            try {
                c.closeSession();
            } catch (RuntimeException e) {
                // already destroyed
            }
        }
        open.clear();
    }

    // ---- helpers ----

    interface Condition {
        boolean holds() throws Exception;
    }

    // Waits for something the server does after a connection is lost; bounded by count, and
    // generous because the machine may be busy.
    static void waitFor(Condition c, String what) throws Exception {
        for (int i = 0; i < 400; i++) {
            if (c.holds()) {
                return;
            }
            Thread.sleep(50);
        }
        throw new AssertionError(what);
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static String describe(Throwable t) {
        return describeMultiline(t).replace('\n', ' ');
    }

    static String describeMultiline(Throwable t) {
        if (t instanceof Glacier2.PermissionDeniedException) {
            return t + " reason=" + ((Glacier2.PermissionDeniedException) t).reason;
        }
        if (t instanceof omero.ServerError) {
            return t + " message=" + ((omero.ServerError) t).message;
        }
        return String.valueOf(t);
    }

    static Field field(Class<?> k, String name) throws NoSuchFieldException {
        for (Class<?> c = k; c != null; c = c.getSuperclass()) {
            try {
                Field f = c.getDeclaredField(name);
                f.setAccessible(true);
                return f;
            } catch (NoSuchFieldException e) {
                // look in the superclass
            }
        }
        throw new NoSuchFieldException(k.getName() + "." + name);
    }

    static Object get(Object o, String name) throws Exception {
        return field(o.getClass(), name).get(o);
    }

    static void set(Object o, String name, Object value) throws Exception {
        field(o.getClass(), name).set(o, value);
    }

    static String rstring(Object o) throws Exception {
        return o == null ? null : (String) get(o, "val");
    }

    // Turns an RType graph into plain Java values so that round trips compare by value.
    static Object unwrap(omero.RType v) throws Exception {
        if (v == null) {
            return null;
        }
        Object val = get(v, "val");
        if (v instanceof omero.RCollection) {
            List<Object> out = new ArrayList<>();
            for (omero.RType x : (omero.RType[]) val) {
                out.add(unwrap(x));
            }
            return out;
        }
        if (v instanceof omero.RMap) {
            Map<String, Object> out = new HashMap<>();
            for (Map.Entry<?, ?> e : ((Map<?, ?>) val).entrySet()) {
                out.put((String) e.getKey(), unwrap((omero.RType) e.getValue()));
            }
            return out;
        }
        return val;
    }
}
