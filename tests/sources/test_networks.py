"""UFOP_BLOCKED_NETWORKS as written and what it parses to: networks, `default`, `none`, empty."""

import ipaddress

import pytest

from ufop_sdk.app.settings import Settings
from ufop_sdk.errors import ConfigError
from ufop_sdk.sources.networks import DEFAULT_BLOCKED_NETWORKS, EmptyNetworkList, is_blocked, parse_networks

RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def blocked_networks(value):
    return Settings.load(".", environ={"UFOP_BLOCKED_NETWORKS": value}).blocked_networks


def test_networks_are_parsed_in_order():
    assert blocked_networks("10.0.0.0/8, ::1") == (ipaddress.ip_network("10.0.0.0/8"),
                                                   ipaddress.ip_network("::1"))


def test_default_stands_for_the_default_list_so_networks_add_to_it():
    value = "default,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"
    assert blocked_networks(value) == DEFAULT_BLOCKED_NETWORKS + RFC1918


def test_default_is_case_insensitive_and_a_network_listed_twice_counts_once():
    value = "10.0.0.0/8, DEFAULT, default, 10.0.0.0/8"
    assert blocked_networks(value) == RFC1918[:1] + DEFAULT_BLOCKED_NETWORKS


@pytest.mark.parametrize("value", ["none", "NONE", " none "])
def test_none_blocks_nothing(value):
    networks = blocked_networks(value)
    assert networks == () and not isinstance(networks, EmptyNetworkList)


def test_an_empty_value_blocks_nothing_and_is_told_apart_from_none():
    assert isinstance(blocked_networks(""), EmptyNetworkList) and blocked_networks(" , ") == ()


@pytest.mark.parametrize("value", ["none,10.0.0.0/8", "default,none"])
def test_none_with_anything_else_is_a_config_error(value):
    with pytest.raises(ConfigError, match="UFOP_BLOCKED_NETWORKS.*'none'"):
        blocked_networks(value)


def test_an_unknown_word_is_a_config_error_naming_the_keywords():
    with pytest.raises(ConfigError, match="'defaults' is not a network.*'default' or 'none'"):
        blocked_networks("defaults")


@pytest.mark.parametrize("address", ["::ffff:10.1.2.3", "64:ff9b::10.1.2.3", "2002:a01:203::1", "10.1.2.3"])
def test_a_users_ipv4_network_also_blocks_the_ipv6_forms_carrying_its_addresses(address):
    assert is_blocked(address, parse_networks("10.0.0.0/8"))


def test_an_address_with_a_zone_is_matched_without_it():
    assert is_blocked("fe80::1%eth0", DEFAULT_BLOCKED_NETWORKS)
