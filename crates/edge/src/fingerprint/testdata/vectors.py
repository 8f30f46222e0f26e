#!/usr/bin/env python3
"""Test vectors for the JA4 tests (vectors.rs): real ClientHellos as raw TLS records, and their JA4.

    vectors.py pcap FILE...            ClientHellos in pcap/pcapng files (FoxIO-LLC/ja4's pcap/),
                                       one JSON line each, with the JA4 their expected output
                                       (FILE.json, from python/test/testdata/) gives
    vectors.py listen PORT N LABEL     accept N connections on 127.0.0.1:PORT and print each one's
                                       ClientHello as a JSON line (point a browser or tool at it;
                                       the handshake then fails, which is fine)
    vectors.py ja4 HEX                 the JA4 (and raw JA4_r) of a ClientHello's records
    vectors.py rust FOXIO.jsonl LOCAL.jsonl...
                                       vectors.rs on stdout: one FoxIO vector per distinct JA4,
                                       then every local capture

The JA4 here is an independent implementation of the specification
(technical_details/JA4.md), written apart from the Rust one: it agrees with FoxIO's expected
outputs on every ClientHello in their captures but one (a non-alphanumeric ALPN: see ja4.rs).
Standard library only.
"""
import hashlib, ipaddress, json, os, socket, struct, sys

GREASE = {0x0a0a + 0x1010 * i for i in range(16)}

def u16(b, o): return struct.unpack('>H', b[o:o+2])[0]

def hello(records):
    hs = b''; off = 0
    while off + 5 <= len(records):
        rlen = u16(records, off + 3); hs += records[off+5:off+5+rlen]; off += 5 + rlen
    n = int.from_bytes(hs[1:4], 'big'); return hs[4:4+n]

def h12(s): return '000000000000' if not s else hashlib.sha256(s.encode()).hexdigest()[:12]

def ja4(records, raw=False):
    b = hello(records); o = 0
    legacy = u16(b, 0); o = 2 + 32
    o += 1 + b[o]
    cl = u16(b, o); ciphers = [u16(b, o + 2 + i) for i in range(0, cl, 2)]; o += 2 + cl
    o += 1 + b[o]
    exts = []; sv = []; alpn = None; sigs = []
    if o + 2 <= len(b):
        el = u16(b, o); o += 2; end = o + el
        while o + 4 <= end:
            t = u16(b, o); l = u16(b, o + 2); d = b[o+4:o+4+l]; o += 4 + l
            if t in GREASE: continue
            exts.append(t)
            if t == 0x2b: sv = [u16(d, 1 + i) for i in range(0, d[0], 2)]
            if t == 0x10 and alpn is None and len(d) >= 3:
                alpn = d[3:3+d[2]]
            if t == 0x0d: sigs = [s for s in (u16(d, 2 + i) for i in range(0, u16(d, 0), 2)) if s not in GREASE]
    sv = [v for v in sv if v not in GREASE]
    ver = max(sv) if sv else legacy
    vmap = {0x0304: '13', 0x0303: '12', 0x0302: '11', 0x0301: '10', 0x0300: 's3', 0x0002: 's2', 0xfeff: 'd1', 0xfefd: 'd2', 0xfefc: 'd3'}
    v = vmap.get(ver, '00')
    sni = 'd' if 0 in exts else 'i'
    ciphers = [c for c in ciphers if c not in GREASE]
    if not alpn: a = '00'
    else:
        an = lambda c: chr(c).isascii() and chr(c).isalnum()
        if an(alpn[0]) and an(alpn[-1]): a = chr(alpn[0]) + chr(alpn[-1])
        else:
            hx = alpn.hex(); a = hx[0] + hx[-1]
    head = f"t{v}{sni}{min(len(ciphers),99):02d}{min(len(exts),99):02d}{a}"
    cs = ','.join(f'{c:04x}' for c in sorted(ciphers))
    es = ','.join(f'{e:04x}' for e in sorted(e for e in exts if e not in (0, 0x10)))
    if sigs: es += '_' + ','.join(f'{s:04x}' for s in sigs)
    if raw: return f"{head}_{cs}_{es}"
    return f"{head}_{h12(cs)}_{h12(es)}"


# --- pcap and pcapng, TCP reassembly ----------------------------------------------------------

def packets(path):
    data = open(path, 'rb').read()
    magic = data[:4]
    if magic in (b'\xd4\xc3\xb2\xa1', b'\x4d\x3c\xb2\xa1'):
        e = '<'
    elif magic in (b'\xa1\xb2\xc3\xd4', b'\xa1\xb2\x3c\x4d'):
        e = '>'
    elif magic == b'\x0a\x0d\x0d\x0a':
        yield from pcapng(data); return
    else:
        return
    link = struct.unpack(e + 'I', data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(e + 'IIII', data[off:off+16])
        yield link, data[off+16:off+16+incl]
        off += 16 + incl

def pcapng(data):
    off = 0; e = '<'; links = []
    while off + 12 <= len(data):
        btype = struct.unpack(e + 'I', data[off:off+4])[0]
        if btype == 0x0a0d0d0a:
            bom = data[off+8:off+12]
            e = '<' if bom == b'\x4d\x3c\x2b\x1a' else '>'
            links = []
        blen = struct.unpack(e + 'I', data[off+4:off+8])[0]
        body = data[off+8:off+blen-4]
        if btype == 1:
            links.append(struct.unpack(e + 'H', body[:2])[0])
        elif btype == 6:
            iface, _, _, cap, _ = struct.unpack(e + 'IIIII', body[:20])
            yield links[iface], body[20:20+cap]
        elif btype == 3:
            yield links[0], body[4:]
        if blen < 12: break
        off += blen

def ip_of(link, frame):
    if link == 1:
        et = struct.unpack('>H', frame[12:14])[0]; p = 14
        while et in (0x8100, 0x88a8):
            et = struct.unpack('>H', frame[p+2:p+4])[0]; p += 4
        return et, frame[p:]
    if link == 113:
        return struct.unpack('>H', frame[14:16])[0], frame[16:]
    if link == 276:
        return struct.unpack('>H', frame[0:2])[0], frame[20:]
    if link == 0:
        fam = struct.unpack('<I', frame[:4])[0]
        return (0x0800 if fam == 2 else 0x86dd), frame[4:]
    if link in (101, 12, 14):
        return (0x0800 if frame[0] >> 4 == 4 else 0x86dd), frame
    return None, None

def tcp_of(et, pkt):
    if et == 0x0800:
        ihl = (pkt[0] & 15) * 4
        if pkt[9] != 6: return None
        total = struct.unpack('>H', pkt[2:4])[0]
        src, dst = str(ipaddress.ip_address(pkt[12:16])), str(ipaddress.ip_address(pkt[16:20]))
        seg = pkt[ihl:total]
    elif et == 0x86dd:
        if pkt[6] != 6: return None
        plen = struct.unpack('>H', pkt[4:6])[0]
        src, dst = str(ipaddress.ip_address(pkt[8:24])), str(ipaddress.ip_address(pkt[24:40]))
        seg = pkt[40:40+plen]
    else:
        return None
    sport, dport, seq = struct.unpack('>HHI', seg[:8])
    doff = (seg[12] >> 4) * 4
    flags = seg[13]
    return (src, sport, dst, dport), seq, flags, seg[doff:]

def hello_records(stream):
    """The records carrying the first handshake message, if it is a complete ClientHello."""
    off = 0; hs = b''
    while off + 5 <= len(stream):
        ctype = stream[off]; rlen = struct.unpack('>H', stream[off+3:off+5])[0]
        if ctype != 22: return None
        if off + 5 + rlen > len(stream): return None
        hs += stream[off+5:off+5+rlen]; off += 5 + rlen
        if len(hs) >= 4:
            if hs[0] != 1: return None
            need = 4 + int.from_bytes(hs[1:4], 'big')
            if len(hs) >= need: return stream[:off]
    return None

def flows(path):
    segs = {}; syn = {}
    for link, frame in packets(path):
        try:
            et, pkt = ip_of(link, frame)
            if et is None: continue
            t = tcp_of(et, pkt)
        except Exception:
            continue
        if not t: continue
        key, seq, flags, payload = t
        if flags & 2: syn[key] = (seq + 1) & 0xffffffff
        if payload: segs.setdefault(key, []).append((seq, payload))
    for key, parts in segs.items():
        start = syn.get(key)
        if start is None:
            cands = [s for s, p in parts if p[:1] == b'\x16' and p[5:6] == b'\x01']
            if not cands: continue
            start = cands[0]
        by_seq = {}
        for s, p in parts: by_seq.setdefault(s, p)
        out = b''; cur = start
        while cur in by_seq and len(out) < 65536:
            p = by_seq[cur]; out += p; cur = (cur + len(p)) & 0xffffffff
        rec = hello_records(out)
        if rec: yield key, rec


def listen(port, n, label):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', port)); s.listen(16)
    for _ in range(n):
        c, _ = s.accept(); c.settimeout(5)
        buf = b''; rec = None
        try:
            while rec is None:
                chunk = c.recv(65536)
                if not chunk: break
                buf += chunk
                rec = hello_records(buf)
        except socket.timeout:
            pass
        c.close()
        if rec:
            print(json.dumps({'label': label, 'ja4': ja4(rec), 'raw': ja4(rec, raw=True), 'hex': rec.hex()}), flush=True)

def rust(foxio, locals_):
    seen = set(); out = []; non_ascii = None
    for l in open(foxio):
        d = json.loads(l)
        if not d['ja4'] or not d['ja4'][0]: continue
        j = d['ja4'][0]; records = bytes.fromhex(d['hex'])
        if d['file'] == 'tls-non-ascii-alpn.pcapng':
            non_ascii = (f"FoxIO {d['file']}, {d['domain'][0]} (first ALPN value 0xbaad; their tools say {j})", d['hex'], ja4(records))
            continue
        if j in seen: continue
        seen.add(j)
        assert ja4(records) == j, (d['file'], d['flow'])
        out.append((f"FoxIO {d['file']}, {d['domain'][0]}", d['hex'], j))
    for f in locals_:
        for l in open(f):
            d = json.loads(l)
            out.append((d['label'] + ' (JA4 by an independent Python implementation of the spec)', d['hex'], ja4(bytes.fromhex(d['hex']))))
    def lit(h):
        parts = [h[i:i+96] for i in range(0, len(h), 96)]
        return '"' + '\\\n         '.join(parts) + '"'
    print('// Generated by testdata/vectors.py from FoxIO-LLC/ja4 pcap/ (expected JA4:')
    print('// python/test/testdata/*.json) and from ClientHellos captured over loopback.')
    print('const VECTORS: &[Vector] = &[')
    for what, h, j in out:
        print(f'    Vector {{\n        what: {json.dumps(what)},\n        ja4: "{j}",\n        records: {lit(h)},\n    }},')
    print('];')
    what, h, j = non_ascii
    print(f'const NON_ASCII_ALPN: Vector = Vector {{\n    what: {json.dumps(what)},\n    ja4: "{j}",\n    records: {lit(h)},\n}};')

if __name__ == '__main__':
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == 'pcap':
        for path in args:
            expected = json.load(open(path + '.json')) if os.path.exists(path + '.json') else []
            for key, rec in flows(path):
                src, sport, dst, dport = key
                match = [x for x in expected if x.get('src') == src and x.get('srcport') == str(sport)
                         and x.get('dst') == dst and x.get('dstport') == str(dport)]
                print(json.dumps({'file': os.path.basename(path), 'flow': f'{src}:{sport}->{dst}:{dport}',
                                  'ja4': [x.get('JA4.1') or x.get('JA4') for x in match],
                                  'domain': [x.get('domain') for x in match], 'hex': rec.hex()}))
    elif cmd == 'listen':
        listen(int(args[0]), int(args[1]), args[2])
    elif cmd == 'ja4':
        records = bytes.fromhex(args[0]); print(ja4(records)); print(ja4(records, raw=True))
    elif cmd == 'rust':
        rust(args[0], args[1:])
    else:
        sys.exit(__doc__)
