//! Outbound traffic of a user-defined network. The network's namespace gets a tap
//! from pasta (started by the holder, see `ns::holder`) with the host's address and
//! default route; it forwards what the containers send, and what leaves through
//! anything but the bridge gets the namespace's own address as its source (one
//! nftables masquerade rule, sent as a netlink batch): pasta answers only the guest
//! address it knows, and so the subnet never shows beyond the network.
use super::netlink::{Netlink, Request};
use anyhow::{Context, Result};

// From linux/netfilter/nf_tables.h and nfnetlink.h (libc lacks these).
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLM_F_APPEND: u16 = 0x800;
/// Source NAT's priority.
const SRCNAT: u32 = 100;

const TABLE: &str = "husk";
const CHAIN: &str = "postrouting";

/// Turns on forwarding in the calling thread's network namespace and adds
/// `table ip husk { chain postrouting { type nat hook postrouting priority srcnat;
/// oif != BRIDGE masquerade } }`.
pub fn enable(bridge_index: u32) -> Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("turning on forwarding in the network")?;
    let nft = |kind: i32| ((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | kind as u16;
    let ipv4 = nfgenmsg(libc::NFPROTO_IPV4 as u8, 0);
    let create = libc::NLM_F_CREATE as u16;

    let mut table = Request::new(nft(libc::NFT_MSG_NEWTABLE), create, &ipv4);
    table.attr_str(NFTA_TABLE_NAME, TABLE);

    let mut chain = Request::new(nft(libc::NFT_MSG_NEWCHAIN), create, &ipv4);
    chain.attr_str(NFTA_CHAIN_TABLE, TABLE).attr_str(NFTA_CHAIN_NAME, CHAIN);
    chain
        .begin(NFTA_CHAIN_HOOK)
        .attr_be32(NFTA_HOOK_HOOKNUM, libc::NF_INET_POST_ROUTING as u32)
        .attr_be32(NFTA_HOOK_PRIORITY, SRCNAT)
        .end();
    chain.attr_be32(NFTA_CHAIN_POLICY, libc::NF_ACCEPT as u32).attr_str(NFTA_CHAIN_TYPE, "nat");

    let mut rule = Request::new(nft(libc::NFT_MSG_NEWRULE), create | NLM_F_APPEND, &ipv4);
    rule.attr_str(NFTA_RULE_TABLE, TABLE).attr_str(NFTA_RULE_CHAIN, CHAIN).begin(NFTA_RULE_EXPRESSIONS);
    expression(&mut rule, "meta", |e| {
        e.attr_be32(NFTA_META_DREG, libc::NFT_REG_1 as u32).attr_be32(NFTA_META_KEY, libc::NFT_META_OIF as u32);
    });
    expression(&mut rule, "cmp", |e| {
        e.attr_be32(NFTA_CMP_SREG, libc::NFT_REG_1 as u32).attr_be32(NFTA_CMP_OP, libc::NFT_CMP_NEQ as u32);
        // meta oif leaves the index in host byte order.
        e.begin(NFTA_CMP_DATA).attr(NFTA_DATA_VALUE, &bridge_index.to_ne_bytes()).end();
    });
    rule.begin(NFTA_LIST_ELEM).attr_str(NFTA_EXPR_NAME, "masq").end();
    rule.end();

    let marker = nfgenmsg(libc::AF_UNSPEC as u8, libc::NFNL_SUBSYS_NFTABLES as u16);
    let batch = vec![
        Request::unacknowledged(libc::NFNL_MSG_BATCH_BEGIN as u16, 0, &marker),
        table,
        chain,
        rule,
        Request::unacknowledged(NFNL_MSG_BATCH_END, 0, &marker),
    ];
    Netlink::open_netfilter()?.call_all(batch, "adding the network's masquerade rule (nftables)")
}

/// struct nfgenmsg
fn nfgenmsg(family: u8, resource: u16) -> [u8; 4] {
    let r = resource.to_be_bytes();
    [family, 0, r[0], r[1]]
}

fn expression(rule: &mut Request, name: &str, data: impl FnOnce(&mut Request)) {
    rule.begin(NFTA_LIST_ELEM).attr_str(NFTA_EXPR_NAME, name).begin(NFTA_EXPR_DATA);
    data(rule);
    rule.end().end();
}
