#!/usr/bin/env python3
"""An independent SIP REGISTER client for the tests: answers digest challenges with Python's
hashlib (MD5 or SHA-256, RFC 7616 / RFC 8760), so Switchboard's digest code is checked against
an implementation that is not its own. Loopback only; bounded (one REGISTER pair per user, 2 s
timeout each).

usage: digest_register.py SERVER_HOST:PORT DOMAIN ALGORITHM FIRST_EXT COUNT PASSWORD_PATTERN
  PASSWORD_PATTERN contains {ext}, e.g. "pw-{ext}-secret"
prints one line per user: EXT STATUS_OF_FIRST STATUS_OF_SECOND ALGORITHM_USED
"""
import hashlib, ipaddress, random, re, socket, sys

server, domain, algorithm, first, count, pattern = sys.argv[1:7]
host, port = server.rsplit(":", 1)
if not ipaddress.ip_address(host).is_loopback:
    sys.exit("loopback only")
dest = (host, int(port))
H = {"MD5": lambda s: hashlib.md5(s.encode()).hexdigest(), "SHA-256": lambda s: hashlib.sha256(s.encode()).hexdigest()}

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
sock.settimeout(2.0)
lport = sock.getsockname()[1]

def transact(msg):
    sock.sendto(msg.encode(), dest)
    data, _ = sock.recvfrom(65535)
    return data.decode("utf-8", "replace")

def challenges(resp):
    out = []
    for line in resp.split("\r\n"):
        if line.lower().startswith("www-authenticate:"):
            params = dict(re.findall(r'(\w+)="?([^",]*)"?', line.split(":", 1)[1]))
            out.append(params)
    return out

for i in range(int(count)):
    ext = str(int(first) + i)
    password = pattern.format(ext=ext)
    call_id = "%x@py" % random.getrandbits(64)
    def register(cseq, auth=""):
        return ("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bK%x\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:%s@%s>;tag=%x\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\n"
                "CSeq: %d REGISTER\r\nContact: <sip:%s@127.0.0.1:%d>\r\nExpires: 600\r\n%s"
                "Content-Length: 0\r\n\r\n") % (domain, lport, random.getrandbits(48), ext, domain,
                random.getrandbits(32), ext, domain, call_id, cseq, ext, lport, auth)
    first_resp = transact(register(1))
    s1 = first_resp.split(" ")[1]
    ch = [c for c in challenges(first_resp) if c.get("algorithm", "MD5").upper() == algorithm.upper()]
    if not ch:
        print(ext, s1, "-", "none-offered")
        continue
    c = ch[0]
    h = H[algorithm.upper()]
    uri = "sip:%s" % domain
    cnonce, nc = "%x" % random.getrandbits(32), "00000001"
    ha1 = h("%s:%s:%s" % (ext, c["realm"], password))
    ha2 = h("REGISTER:%s" % uri)
    response = h("%s:%s:%s:%s:auth:%s" % (ha1, c["nonce"], nc, cnonce, ha2))
    auth = ('Authorization: Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", '
            'algorithm=%s, cnonce="%s", qop=auth, nc=%s\r\n') % (ext, c["realm"], c["nonce"], uri, response,
            algorithm.upper(), cnonce, nc)
    second = transact(register(2, auth))
    print(ext, s1, second.split(" ")[1], algorithm.upper())
