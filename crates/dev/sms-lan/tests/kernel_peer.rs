//! The smoltcp hosts against a real TCP/IP peer: the kernel, joined to the
//! segment through a tap device that the test moves into a network
//! namespace of its own (the tests run as root). ARP both ways, an
//! unplugged host that stops answering, TCP under 1 % frame loss, a
//! thousand devices behind one interface, and mutual TLS with the
//! appliance's own rustls configurations in both directions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sha2::{Digest as _, Sha256};
use sms_lan::netns::KernelHost;
use sms_lan::{Buffers, Faults, HostConfig, HostId, Lan, Mac};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The kernel end of the segment, failing the test if it cannot be made.
fn kernel(lan: &Lan, cidr: &str) -> KernelHost {
    KernelHost::join(lan, cidr)
        .expect("a namespace with a tap on the segment (the tests run as root)")
}

/// Runs `f` in the kernel's namespace.
async fn on<T: Send + 'static>(k: &KernelHost, f: impl FnOnce() -> T + Send + 'static) -> T {
    k.run(f).await.expect("a thread in the namespace")
}

fn device(lan: &Lan, i: u32, net: Ipv4Addr, prefix: u8) -> HostId {
    let address = Ipv4Addr::from(u32::from(net) + 10 + i);
    lan.add_host(HostConfig {
        mac: Mac::local(i + 1),
        address,
        prefix,
        gateway: None,
    })
    .unwrap()
}

/// Echoes what each connection sends until it closes.
fn echo(lan: &Lan, host: HostId, port: u16) -> tokio::task::JoinHandle<()> {
    let mut l = lan.listen(host, port, 2).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok(mut s) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    })
}

fn kernel_echo_once(to: SocketAddr, msg: &[u8], wait: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = std::net::TcpStream::connect_timeout(&to, wait)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

const NET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arp_resolves_both_ways_and_an_unplugged_host_stops_answering() {
    let lan = Lan::start(1, Buffers::default());
    let d0 = device(&lan, 0, NET, 24);
    let d1 = device(&lan, 1, NET, 24);
    let _echo = echo(&lan, d0, 7);
    let _echo1 = echo(&lan, d1, 7);
    let kernel = kernel(&lan, "192.0.2.1/24");

    // The kernel reaches device 0: it asked for its MAC and got it.
    let back = on(&kernel, || {
        kernel_echo_once(
            "192.0.2.10:7".parse().unwrap(),
            b"hello",
            Duration::from_secs(5),
        )
    })
    .await
    .expect("echo from device 0");
    assert_eq!(back, b"hello");
    let n = kernel.neighbour("192.0.2.10").unwrap();
    assert!(
        n.contains(&Mac::local(1).to_string()),
        "the kernel's neighbour entry for device 0 carries its MAC: {n}"
    );

    // Device 0 reaches the kernel: it resolves the kernel's MAC itself.
    let listener = on(&kernel, || {
        std::net::TcpListener::bind("192.0.2.1:9000").unwrap()
    })
    .await;
    let accept = std::thread::spawn(move || {
        let (mut s, from) = listener.accept().unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
        from
    });
    let mut s = lan
        .connect(d0, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 9000))
        .await
        .expect("device 0 connects to the kernel");
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ping");
    let from = tokio::task::spawn_blocking(move || accept.join().unwrap())
        .await
        .unwrap();
    assert_eq!(from.ip().to_string(), "192.0.2.10");

    // Unplugged, device 1 answers neither ARP nor TCP; plugged back, it does.
    lan.set_host_up(d1, false);
    let r = on(&kernel, || {
        kernel_echo_once(
            "192.0.2.11:7".parse().unwrap(),
            b"x",
            Duration::from_secs(3),
        )
    })
    .await;
    assert!(r.is_err(), "an unplugged device must not answer: {r:?}");
    let n = kernel.neighbour("192.0.2.11").unwrap();
    assert!(
        !n.contains(&Mac::local(2).to_string()),
        "no MAC for an unplugged device: {n}"
    );
    lan.set_host_up(d1, true);
    // The kernel keeps a failed neighbour entry for a while; forget it.
    kernel.flush_neighbours().unwrap();
    let back = on(&kernel, || {
        kernel_echo_once(
            "192.0.2.11:7".parse().unwrap(),
            b"again",
            Duration::from_secs(5),
        )
    })
    .await
    .expect("device 1 plugged back");
    assert_eq!(back, b"again");
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = seed as u32 | 1;
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_carries_every_byte_both_ways_under_one_percent_frame_loss() {
    const LEN: usize = 4 << 20;
    let lan = Lan::start(7, Buffers::default());
    let d0 = device(&lan, 0, NET, 24);
    let kernel = kernel(&lan, "192.0.2.1/24");
    lan.set_faults(Faults {
        loss: 0.01,
        ..Faults::default()
    });

    // The kernel takes LEN bytes, answers their SHA-256, then sends LEN
    // bytes of its own.
    let listener = on(&kernel, || {
        std::net::TcpListener::bind("192.0.2.1:9001").unwrap()
    })
    .await;
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = vec![0u8; LEN];
        s.read_exact(&mut got).unwrap();
        s.write_all(&Sha256::digest(&got)).unwrap();
        s.write_all(&pattern(LEN, 2)).unwrap();
    });
    let started = Instant::now();
    let mut s = lan
        .connect(d0, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 9001))
        .await
        .unwrap();
    let sent = pattern(LEN, 1);
    s.write_all(&sent).await.unwrap();
    let mut digest = [0u8; 32];
    s.read_exact(&mut digest).await.unwrap();
    assert_eq!(
        digest[..],
        Sha256::digest(&sent)[..],
        "the kernel got every byte, in order"
    );
    let mut back = vec![0u8; LEN];
    s.read_exact(&mut back).await.unwrap();
    assert!(
        back == pattern(LEN, 2),
        "the device got every byte, in order"
    );
    tokio::task::spawn_blocking(move || peer.join().unwrap())
        .await
        .unwrap();
    let c = lan.counters();
    eprintln!(
        "2 x {} MiB in {:.2} s; {} frames, {} lost",
        LEN >> 20,
        started.elapsed().as_secs_f64(),
        c.frames_in,
        c.lost
    );
    assert!(
        c.lost as f64 > c.frames_in as f64 * 0.005,
        "the loss knob dropped frames: {c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_devices_answer_behind_one_interface() {
    const DEVICES: u32 = 1000;
    let net = Ipv4Addr::new(198, 18, 0, 0);
    let lan = Lan::start(
        3,
        Buffers {
            rx: 8 * 1024,
            tx: 8 * 1024,
        },
    );
    let mut echoes = Vec::new();
    for i in 0..DEVICES {
        let d = device(&lan, i, net, 22);
        echoes.push(echo(&lan, d, 7));
    }
    let kernel = kernel(&lan, "198.18.0.1/22");
    let ns = kernel.ns.clone();
    let started = Instant::now();
    let answered = on(&kernel, move || {
        let mut ok = Vec::new();
        for i in 0..DEVICES {
            if i % 250 == 0 {
                // Keep the kernel's neighbour table (shared by all
                // namespaces, 1024 entries by default) small.
                let _ = Command::new("ip")
                    .args(["-n", &ns, "neigh", "flush", "all"])
                    .status();
            }
            let addr = SocketAddr::from((Ipv4Addr::from(u32::from(net) + 10 + i), 7));
            let msg = i.to_be_bytes();
            if kernel_echo_once(addr, &msg, Duration::from_secs(5))
                .ok()
                .as_deref()
                == Some(&msg[..])
            {
                ok.push(i);
            }
        }
        ok
    })
    .await;
    eprintln!(
        "{} of {DEVICES} devices answered in {:.2} s",
        answered.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        answered.len(),
        DEVICES as usize,
        "every device answers on its own address"
    );
    let macs: std::collections::HashSet<_> = (0..DEVICES)
        .map(|i| lan.host_config(HostId::from_index(i as usize)).unwrap().mac)
        .collect();
    assert_eq!(macs.len(), DEVICES as usize, "each device has its own MAC");
}

struct Pki {
    ca_pem: String,
    server_chain: String,
    server_key: String,
    client_chain: String,
    client_key: String,
    stranger_chain: String,
    stranger_key: String,
}

fn pki(server_ip: Ipv4Addr) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key).unwrap();
    let issue = |sans: Vec<SanType>, issuer: &rcgen::Certificate, issuer_key: &KeyPair| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.subject_alt_names = sans;
        let cert = p.signed_by(&key, issuer, issuer_key).unwrap();
        (
            format!("{}{}", cert.pem(), issuer.pem()),
            key.serialize_pem(),
        )
    };
    let (server_chain, server_key) =
        issue(vec![SanType::IpAddress(server_ip.into())], &ca, &ca_key);
    let (client_chain, client_key) = issue(vec![], &ca, &ca_key);
    let other_key = KeyPair::generate().unwrap();
    let other = CertificateParams::default()
        .self_signed(&other_key)
        .unwrap();
    let (stranger_chain, stranger_key) = issue(vec![], &other, &other_key);
    Pki {
        ca_pem: ca.pem(),
        server_chain,
        server_key,
        client_chain,
        client_key,
        stranger_chain,
        stranger_key,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_runs_over_the_smoltcp_hosts_in_both_directions() {
    let lan = Lan::start(5, Buffers::default());
    let d0 = device(&lan, 0, NET, 24);
    let kernel = kernel(&lan, "192.0.2.1/24");

    // A device serving HTTPS to the appliance: its certificate for
    // 192.0.2.10, the appliance's client certificate demanded.
    let device_pki = pki(Ipv4Addr::new(192, 0, 2, 10));
    let mut roots = rustls::RootCertStore::empty();
    for c in sms_core::tls::certs_from_pem(device_pki.ca_pem.as_bytes(), "ca").unwrap() {
        roots.add(c).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        sms_core::tls::provider(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(sms_core::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            sms_core::tls::certs_from_pem(device_pki.server_chain.as_bytes(), "chain").unwrap(),
            sms_core::tls::key_from_pem(device_pki.server_key.as_bytes(), "key").unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let mut l = lan.listen(d0, 443, 2).unwrap();
    let served = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        for _ in 0..2 {
            let s = l.accept().await.unwrap();
            match acceptor.accept(s).await {
                Ok(mut tls) => {
                    let mut b = [0u8; 6];
                    tls.read_exact(&mut b).await.unwrap();
                    tls.write_all(b"device").await.unwrap();
                    tls.shutdown().await.unwrap();
                    outcomes.push(Ok(b));
                }
                Err(e) => outcomes.push(Err(e.to_string())),
            }
        }
        outcomes
    });

    // The appliance side (the kernel) with its client identity, then a
    // stranger with a certificate from another CA.
    let p = (
        device_pki.ca_pem.clone(),
        device_pki.client_chain.clone(),
        device_pki.client_key.clone(),
        device_pki.stranger_chain.clone(),
        device_pki.stranger_key.clone(),
    );
    let (good, stranger) = on(&kernel, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let attempt = |chain: String, key: String| {
                let ca = p.0.clone();
                async move {
                    let id =
                        sms_core::tls::ClientIdentity::from_pem(chain.as_bytes(), key.as_bytes())
                            .map_err(|e| e.to_string())?;
                    let cfg = id
                        .trusting_ca(ca.as_bytes(), "device CA")
                        .map_err(|e| e.to_string())?;
                    let tcp = tokio::net::TcpStream::connect("192.0.2.10:443")
                        .await
                        .map_err(|e| e.to_string())?;
                    let name = rustls::pki_types::ServerName::try_from("192.0.2.10").unwrap();
                    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                        .connect(name, tcp)
                        .await
                        .map_err(|e| e.to_string())?;
                    tls.write_all(b"appl.!").await.map_err(|e| e.to_string())?;
                    let mut b = Vec::new();
                    tls.read_to_end(&mut b).await.map_err(|e| e.to_string())?;
                    Ok::<_, String>(b)
                }
            };
            let good = attempt(p.1.clone(), p.2.clone()).await;
            let stranger = attempt(p.3.clone(), p.4.clone()).await;
            (good, stranger)
        })
    })
    .await;
    assert_eq!(
        good.as_deref(),
        Ok(&b"device"[..]),
        "the appliance's mutual-TLS session"
    );
    assert!(
        stranger.is_err(),
        "a client from another CA gets nothing: {stranger:?}"
    );
    let outcomes = served.await.unwrap();
    assert_eq!(outcomes[0].as_ref().map(|b| &b[..]), Ok(&b"appl.!"[..]));
    assert!(
        outcomes[1].is_err(),
        "the device refused the stranger: {:?}",
        outcomes[1]
    );

    // A device fetching from the appliance's HTTPS server (its server
    // configuration as the appliance builds it).
    let appliance_pki = pki(Ipv4Addr::new(192, 0, 2, 1));
    let server = sms_core::tls::server_config_from_pem(
        appliance_pki.server_chain.as_bytes(),
        appliance_pki.server_key.as_bytes(),
    )
    .unwrap();
    let listener = on(&kernel, || {
        let l = std::net::TcpListener::bind("192.0.2.1:8443").unwrap();
        l.set_nonblocking(true).unwrap();
        l
    })
    .await;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let kernel_server = tokio::spawn(async move {
        let l = tokio::net::TcpListener::from_std(listener).unwrap();
        let (s, _) = l.accept().await.unwrap();
        let mut tls = acceptor.accept(s).await.unwrap();
        tls.write_all(b"appliance").await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let cfg =
        sms_core::tls::client_config_from_pem(appliance_pki.ca_pem.as_bytes(), "appliance CA")
            .unwrap();
    let tcp = lan
        .connect(d0, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 8443))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("192.0.2.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("the device's handshake with the appliance's server");
    let mut b = Vec::new();
    tls.read_to_end(&mut b).await.unwrap();
    assert_eq!(b, b"appliance");
    kernel_server.await.unwrap();
}

/// The wire format QEMU's `-netdev dgram` uses over unix sockets: one
/// Ethernet frame per datagram, from a bound address the segment learns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_peer_is_answered_in_qemus_datagram_format() {
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
        EthernetRepr,
    };
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("lan.sock");
    let vm_path = dir.path().join("vm.sock");
    let lan = Lan::start(9, Buffers::default());
    let d0 = device(&lan, 0, NET, 24);
    lan.attach_dgram(&seg).unwrap();
    let vm = tokio::net::UnixDatagram::bind(&vm_path).unwrap();
    let vm_mac = EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

    // Who has 192.0.2.10? Tell 192.0.2.1.
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: vm_mac,
        source_protocol_addr: Ipv4Addr::new(192, 0, 2, 1),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: Ipv4Addr::new(192, 0, 2, 10),
    };
    let eth = EthernetRepr {
        src_addr: vm_mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut f);
    arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    vm.send_to(&frame, &seg).await.unwrap();

    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), vm.recv(&mut buf))
        .await
        .expect("an ARP reply within 5 s")
        .unwrap();
    let f = EthernetFrame::new_checked(&buf[..n]).unwrap();
    assert_eq!(f.dst_addr(), vm_mac, "the reply is addressed to the VM");
    assert_eq!(f.ethertype(), EthernetProtocol::Arp);
    let reply = ArpRepr::parse(&ArpPacket::new_checked(f.payload()).unwrap()).unwrap();
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        source_protocol_addr,
        ..
    } = reply
    else {
        panic!("not an IPv4 ARP reply: {reply:?}");
    };
    assert_eq!(operation, ArpOperation::Reply);
    assert_eq!(source_protocol_addr, Ipv4Addr::new(192, 0, 2, 10));
    assert_eq!(source_hardware_addr.0, lan.host_config(d0).unwrap().mac.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_go_both_ways_with_the_kernel() {
    let lan = Lan::start(11, Buffers::default());
    let d0 = device(&lan, 0, NET, 24);
    let kernel = kernel(&lan, "192.0.2.1/24");
    let agent = lan.bind_udp(d0, 161).unwrap();
    let answering = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        let (n, from) = agent.recv_from(&mut buf).await.unwrap();
        let mut reply = b"re:".to_vec();
        reply.extend_from_slice(&buf[..n]);
        agent.send_to(&reply, from).await.unwrap();
        from
    });
    let got = on(&kernel, || {
        let s = std::net::UdpSocket::bind("192.0.2.1:40000").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        // The first datagram may wait on ARP; send until answered.
        for _ in 0..5 {
            s.send_to(b"get", "192.0.2.10:161").unwrap();
            if let Ok(n) = s.recv(&mut buf) {
                return buf[..n].to_vec();
            }
        }
        Vec::new()
    })
    .await;
    assert_eq!(got, b"re:get");
    assert_eq!(answering.await.unwrap(), "192.0.2.1:40000".parse().unwrap());

    // A device's own datagram (a trap) reaches a kernel listener.
    let trap = lan.bind_udp(d0, 0).unwrap();
    let listener = on(&kernel, || {
        let s = std::net::UdpSocket::bind("192.0.2.1:8162").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    })
    .await;
    trap.send_to(b"trap", "192.0.2.1:8162".parse().unwrap())
        .await
        .unwrap();
    let (n, from) = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 64];
        let (n, from) = listener.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from)
    })
    .await
    .unwrap();
    assert_eq!(n, b"trap");
    assert_eq!(
        from,
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, 10), trap.port()))
    );
}

/// The appliance (the kernel) reaches services "on the internet" through
/// the gateway, which carries them to the host's loopback; addresses
/// without a forward are refused; the gateway never claims a device's
/// address; and the host reaches the appliance through explicit forwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_carries_the_world_and_the_forwards_carry_the_admin() {
    use sms_lan::{Forward, Proto};
    let lan = Lan::start(13, Buffers::default());
    let d0 = device(&lan, 0, NET, 24);
    let _echo = echo(&lan, d0, 7);
    // Services on the host's loopback.
    let tmc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tmc_addr = tmc.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tmc.accept().await {
            let _ = s.write_all(b"update centre").await;
        }
    });
    let dns = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dns_addr = dns.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = dns.recv_from(&mut buf).await {
            let mut r = b"answer:".to_vec();
            r.extend_from_slice(&buf[..n]);
            let _ = dns.send_to(&r, from).await;
        }
    });
    lan.add_gateway(
        HostConfig {
            mac: Mac::local(0xfe),
            address: Ipv4Addr::new(192, 0, 2, 254),
            prefix: 24,
            gateway: None,
        },
        vec![
            Forward {
                proto: Proto::Tcp,
                public: "203.0.113.10:443".parse().unwrap(),
                target: tmc_addr,
            },
            Forward {
                proto: Proto::Udp,
                public: "203.0.113.53:53".parse().unwrap(),
                target: dns_addr,
            },
        ],
        Some(sms_lan::dhcp::DhcpPool {
            first: Ipv4Addr::new(192, 0, 2, 2),
            last: Ipv4Addr::new(192, 0, 2, 9),
            prefix: 24,
            router: Ipv4Addr::new(192, 0, 2, 254),
            lease_secs: 3600,
        }),
    )
    .unwrap();
    let kernel = kernel(&lan, "192.0.2.1/24");
    ip_ok(&[
        "-n",
        &kernel.ns,
        "route",
        "add",
        "default",
        "via",
        "192.0.2.254",
    ]);

    let (tcp, refused, udp) = on(&kernel, || {
        let mut s = std::net::TcpStream::connect_timeout(
            &"203.0.113.10:443".parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        let mut got = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.read_to_end(&mut got).ok();
        let refused = std::net::TcpStream::connect_timeout(
            &"203.0.113.99:443".parse().unwrap(),
            Duration::from_secs(5),
        )
        .map(|_| ())
        .map_err(|e| e.kind());
        let u = std::net::UdpSocket::bind("192.0.2.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        u.send_to(b"q", "203.0.113.53:53").unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = u.recv_from(&mut buf).unwrap();
        (got, refused, (buf[..n].to_vec(), from))
    })
    .await;
    assert_eq!(tcp, b"update centre");
    assert_eq!(refused, Err(std::io::ErrorKind::ConnectionRefused));
    assert_eq!(udp.0, b"answer:q");
    assert_eq!(
        udp.1,
        "203.0.113.53:53".parse().unwrap(),
        "the answer comes from the address asked"
    );

    // The device's address still resolves to the device, not the gateway.
    let back = on(&kernel, || {
        kernel_echo_once(
            "192.0.2.10:7".parse().unwrap(),
            b"hi",
            Duration::from_secs(5),
        )
    })
    .await
    .unwrap();
    assert_eq!(back, b"hi");
    let n = kernel.neighbour("192.0.2.10").unwrap();
    assert!(n.contains(&Mac::local(1).to_string()), "{n}");

    // The admin's way in: host ports forwarded to the appliance's SSH and
    // SNMP from a workstation on the segment.
    let admin = device(&lan, 240, NET, 24);
    let ssh = on(&kernel, || {
        std::net::TcpListener::bind("192.0.2.1:22").unwrap()
    })
    .await;
    let snmp = on(&kernel, || {
        std::net::UdpSocket::bind("192.0.2.1:161").unwrap()
    })
    .await;
    let inside = std::thread::spawn(move || {
        let (mut s, from) = ssh.accept().unwrap();
        s.write_all(b"SSH-2.0-appliance\r\n").unwrap();
        let mut buf = [0u8; 64];
        let (n, peer) = snmp.recv_from(&mut buf).unwrap();
        snmp.send_to(&buf[..n], peer).unwrap();
        (from, peer)
    });
    let host_ssh = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_ssh_addr = host_ssh.local_addr().unwrap();
    lan.forward_tcp_in(admin, host_ssh, "192.0.2.1:22".parse().unwrap());
    let host_snmp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let host_snmp_addr = host_snmp.local_addr().unwrap();
    lan.forward_udp_in(admin, host_snmp, "192.0.2.1:161".parse().unwrap())
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(host_ssh_addr).await.unwrap();
    let mut banner = [0u8; 19];
    s.read_exact(&mut banner).await.unwrap();
    assert_eq!(&banner, b"SSH-2.0-appliance\r\n");
    let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    u.send_to(b"get sysName", host_snmp_addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), u.recv(&mut buf))
        .await
        .expect("the SNMP answer through the forward")
        .unwrap();
    assert_eq!(&buf[..n], b"get sysName");
    let (from, peer) = tokio::task::spawn_blocking(move || inside.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        from.ip().to_string(),
        "192.0.2.250",
        "SSH came from the workstation"
    );
    assert_eq!(
        peer.ip().to_string(),
        "192.0.2.250",
        "SNMP came from the workstation"
    );
}

fn ip_ok(args: &[&str]) {
    sms_lan::netns::ip(args).unwrap();
}
