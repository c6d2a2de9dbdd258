"""Which addresses a source may not come from: the default list, UFOP_BLOCKED_NETWORKS, and the match.

Plain ``ipaddress``, so settings can parse the list without importing the HTTP client.
"""

import ipaddress
import socket

# What is never a legitimate source, so `serve` refuses it unless UFOP_BLOCKED_NETWORKS says otherwise.
# Private RFC 1918 networks are not here: a platform's own storage may live there.
DEFAULT_BLOCKED_NETWORKS = tuple(ipaddress.ip_network(network) for network in (
    "0.0.0.0/8",        # "this network"; 0.0.0.0 reaches this host
    "127.0.0.0/8",      # loopback
    "169.254.0.0/16",   # link-local: 169.254.169.254 is the AWS/GCP/Azure/Tencent metadata service
    "100.64.0.0/10",    # carrier-grade NAT: 100.100.100.200 is Alibaba Cloud's metadata service
    "192.0.0.0/24",     # IETF protocol assignments (DS-Lite, NAT64 discovery)
    "224.0.0.0/4",      # multicast
    "240.0.0.0/4",      # reserved, and the broadcast 255.255.255.255
    "::/128",           # unspecified
    "::1/128",          # loopback
    "fe80::/10",        # link-local
    "fec0::/10",        # site-local, deprecated
    "fc00::/7",         # unique local: fd00:ec2::254 is AWS's IPv6 metadata service
    "ff00::/8",         # multicast
))

# IPv6 prefixes whose addresses carry an IPv4 one, which is matched as well, so that the NAT64
# or IPv4-mapped spelling of a blocked IPv4 address is blocked too.
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EmptyNetworkList(tuple):
    """What an empty UFOP_BLOCKED_NETWORKS parses to: blocks nothing, as ``none`` does, but an
    empty value is as often a mistake as a choice, so the policy built from it logs a warning."""


def parse_networks(text):
    """UFOP_BLOCKED_NETWORKS: comma-separated networks (``10.0.0.0/8``, ``::1``).

    ``default`` stands for DEFAULT_BLOCKED_NETWORKS, so ``default,10.0.0.0/8`` adds to them;
    ``none`` (alone) blocks nothing. An empty value blocks nothing too: an EmptyNetworkList.
    """
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        return EmptyNetworkList()
    keywords = [item.lower() for item in items]
    if "none" in keywords:
        if len(items) > 1:
            raise ValueError("'none' blocks nothing and cannot be combined with networks")
        return ()
    networks = []
    for item, keyword in zip(items, keywords, strict=True):
        networks.extend(DEFAULT_BLOCKED_NETWORKS if keyword == "default" else [_network(item)])
    return tuple(dict.fromkeys(networks))


def _network(item):
    try:
        return ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise ValueError(f"{item!r} is not a network such as 10.0.0.0/8 or ::1, "
                         "nor 'default' or 'none'") from None


def is_blocked(address, networks):
    """Whether `address` (text, maybe with a ``%zone``) or the IPv4 address it carries is in `networks`."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates = [ip, embedded_ipv4(ip)]
    return any(candidate in network for candidate in candidates if candidate is not None
               for network in networks)


def embedded_ipv4(ip):
    """The IPv4 address an IPv6 one carries: IPv4-mapped, NAT64, 6to4 or Teredo's client; else None."""
    if ip.version == 4:
        return None
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    teredo = ip.teredo
    return ip.ipv4_mapped or ip.sixtofour or (teredo[1] if teredo else None)


def localhost_addresses(host, port, family=socket.AF_UNSPEC):
    """The loopback (family, sockaddr) pairs of a ``localhost`` name, else None.

    RFC 6761 (6.3) makes ``localhost`` and every name under ``.localhost``
    the loopback; browsers and curl answer so, glibc's resolver does not
    (``dev`` serves its second bucket as ``NAME.localhost``). They are then
    checked like any address: `serve`'s default list blocks the loopback.
    """
    name = host.lower().rstrip(".")
    if name != "localhost" and not name.endswith(".localhost"):
        return None
    pairs = [(socket.AF_INET, ("127.0.0.1", port)), (socket.AF_INET6, ("::1", port, 0, 0))]
    return [pair for pair in pairs if family in (socket.AF_UNSPEC, pair[0])]
