// Writes encoding test vectors with ZeroC's Ice 3.7 Java runtime (see run.sh). Each vector is
// one encapsulation (6-byte header included) written by com.zeroc.Ice.OutputStream; the output
// is a JSON object "name" -> "hex", in the order written.
import com.zeroc.Ice.*;
import java.util.*;
import Test.*;

public class Gen {
    static final EncodingVersion E10 = new EncodingVersion((byte) 1, (byte) 0);
    static final EncodingVersion E11 = new EncodingVersion((byte) 1, (byte) 1);
    static Communicator com;
    static final LinkedHashMap<String, String> out = new LinkedHashMap<>();

    interface Body { void write(OutputStream os); }

    static void vector(String name, EncodingVersion enc, FormatType format, Body body) {
        OutputStream os = new OutputStream(com, enc);
        os.startEncapsulation(enc, format);
        body.write(os);
        os.endEncapsulation();
        StringBuilder hex = new StringBuilder();
        for (byte b : os.finished()) {
            hex.append(String.format("%02x", b & 0xff));
        }
        out.put(name, hex.toString());
    }

    static void both(String name, Body body) {
        vector(name + "_1_0", E10, FormatType.CompactFormat, body);
        vector(name + "_1_1", E11, FormatType.CompactFormat, body);
    }

    static void classes(String name, Body body) {
        vector(name + "_1_0", E10, FormatType.CompactFormat, body);
        vector(name + "_compact", E11, FormatType.CompactFormat, body);
        vector(name + "_sliced", E11, FormatType.SlicedFormat, body);
    }

    static Derived specGraph() {
        Derived d = new Derived();
        d.i = 7;
        d.s = "hi";
        d.setO(42);
        Base b = new Base(8, d);
        d.next = b;
        return d;
    }

    static MoreDerived moreDerived() {
        MoreDerived m = new MoreDerived();
        m.i = 1;
        m.s = "s";
        m.setO(5);
        m.extra = "e";
        m.other = new Base(2, m);
        m.setTag("t");
        Base holder = new Base(3, m);
        m.next = holder;
        return m;
    }

    static final String[] PROXIES = {
        "OMERO.Glacier2/router:ssl -p 4064 -h localhost",
        "cat/id -f fac -o -s:tcp -h 1.2.3.4 -p 10000 -t 5000 -z:udp -h 239.255.0.1 -p 10001 -z"
            + ":ws -h wshost -p 80 -r /omero-ws:wss -h wsshost -p 443 -t infinite -r /",
        "opaque -e 1.0:opaque -t 99 -e 1.1 -v AQID",
        "cat/name -D @ Adapter",
        "wellknown",
    };

    public static void main(String[] args) {
        com = Util.initialize(args);
        try {
            both("primitives", os -> {
                os.writeBool(true);
                os.writeByte((byte) 0xfe);
                os.writeShort((short) -2);
                os.writeInt(123456);
                os.writeLong(-9876543210L);
                os.writeFloat(1.5f);
                os.writeDouble(-2.25);
                os.writeString("h\u00e9llo");
                os.writeString("");
                os.writeString(String.join("", Collections.nCopies(300, "a")));
            });
            both("collections", os -> {
                os.writeIntSeq(new int[] {1, 2, 3});
                os.writeStringSeq(new String[] {"a", "bc"});
                os.writeByteSeq(new byte[] {1, 2, (byte) 255});
                PointSeqHelper.write(os, new Point[] {new Point(1, 2), new Point(3, 4)});
                LinkedHashMap<String, Integer> d = new LinkedHashMap<>();
                d.put("a", 1);
                d.put("b", 2);
                StrIntDictHelper.write(os, d);
                os.writeIntSeq(new int[0]);
            });
            both("enums", os -> {
                Color.ice_write(os, Color.blue);
                Mid.ice_write(os, Mid.m200);
                Huge.ice_write(os, Huge.h70000);
                Huge.ice_write(os, Huge.h0);
            });
            both("struct", os -> Named.ice_write(os, new Named("n", new Point(1, 2), Color.green)));
            for (int i = 0; i < PROXIES.length; i++) {
                ObjectPrx p = com.stringToProxy(PROXIES[i]);
                both("proxy" + i, os -> os.writeProxy(p));
            }
            both("proxy_null", os -> os.writeProxy(null));
            both("optionals", os -> {
                os.writeInt(21);
                os.writeBool(1, Optional.of(true));
                os.writeShort(2, Optional.of((short) 7));
                os.writeInt(3, OptionalInt.of(8));
                os.writeLong(4, OptionalLong.of(9));
                os.writeFloat(5, Optional.of(1.5f));
                os.writeDouble(6, OptionalDouble.of(2.5));
                os.writeString(7, Optional.of("x"));
                Color.ice_write(os, 8, Optional.of(Color.blue));
                Point.ice_write(os, 9, Optional.of(new Point(1, 2)));
                Named.ice_write(os, 10, Optional.of(new Named("n", new Point(3, 4), Color.red)));
                os.writeIntSeq(11, Optional.of(new int[] {5, 6}));
                os.writeStringSeq(12, Optional.of(new String[] {"p", "q"}));
                os.writeByteSeq(13, Optional.of(new byte[] {9, 8}));
                PointSeqHelper.write(os, 14, Optional.of(new Point[] {new Point(7, 8)}));
                TreeMap<String, Integer> d = new TreeMap<>();
                d.put("k", 3);
                StrIntDictHelper.write(os, 15, Optional.of(d));
                os.writeProxy(16, Optional.of(com.stringToProxy(PROXIES[0])));
                os.writeValue(17, Optional.of(new Base(4, null)));
                os.writeInt(30, OptionalInt.of(30));
                os.writeString(300, Optional.of("big"));
            });
            classes("spec_graph", os -> {
                os.writeValue(specGraph());
                os.writePendingValues();
            });
            classes("null_value", os -> {
                os.writeValue(null);
                os.writePendingValues();
            });
            classes("compact_id", os -> {
                os.writeValue(new Compact(5));
                os.writePendingValues();
            });
            classes("more_derived", os -> {
                os.writeValue(moreDerived());
                os.writePendingValues();
            });
            classes("shared", os -> {
                Base shared = new Base(1, null);
                os.writeValue(shared);
                os.writeValue(new Base(2, shared));
                os.writeValue(shared);
                os.writePendingValues();
            });
            classes("ex_derived", os -> os.writeException(new DerivedEx("bad", 5)));
            classes("ex_unknown", os -> os.writeException(new UnknownEx("why", 6, "more")));
            classes("ex_class", os -> {
                ClassEx e = new ClassEx("r", specGraph());
                e.setNote("n");
                os.writeException(e);
            });
            classes("ex_class_null", os -> os.writeException(new ClassEx("r", null)));
        } finally {
            com.destroy();
        }
        StringBuilder json = new StringBuilder("{\n");
        int n = 0;
        for (Map.Entry<String, String> e : out.entrySet()) {
            json.append("  \"").append(e.getKey()).append("\": \"").append(e.getValue()).append('"');
            json.append(++n < out.size() ? ",\n" : "\n");
        }
        json.append("}\n");
        System.out.print(json);
    }
}
