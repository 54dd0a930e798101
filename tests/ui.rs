//! The mixer window, driven headless with egui_kittest: the app is built
//! from the library, clicked and typed at, and its state checked. Most tests
//! put a detached peer behind it (the test plays the peer's part through
//! its channels); one runs a real peer on loopback.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui::Key;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use synfony::audio::decode::Probe;
use synfony::audio::{ENGINE_RATE_HZ, FileStem, StemAudio};
use synfony::protocol::message::StemHash;
use synfony::protocol::{
    Channel, Decision, Event, PeerId, Round, SessionState, Verdict, Vote, VoteOutcome,
};
use synfony::runtime::control::Command;
use synfony::runtime::events::{PeerEvent, Ready};
use synfony::runtime::lan::FoundSession;
use synfony::runtime::peer::{DetachedPeer, PeerHandle};
use synfony::runtime::room::{SongStem, StemSource};
use synfony::ui::controller::MAX_EVENTS_PER_FRAME;
use synfony::ui::timeline::Overview;
use synfony::ui::{LoadedStem, MixerApp, PeerTemplate, Settings, StemKey};

const ME: PeerId = PeerId(0xA11CE);
const BOB: PeerId = PeerId(0xB0B);

/// A quiet 220 Hz tone, so meters and the overview have something.
fn tone(name: &str, secs: f64) -> StemAudio {
    let frames = (secs * f64::from(ENGINE_RATE_HZ)) as usize;
    let samples: Vec<f32> = (0..frames * 2)
        .map(|i| 0.2 * (i as f32 / 2.0 * 220.0 * std::f32::consts::TAU / 48_000.0).sin())
        .collect();
    StemAudio::from_interleaved(name, ENGINE_RATE_HZ, samples)
}

fn stems(names: &[&str], secs: f64) -> Vec<LoadedStem> {
    names
        .iter()
        .map(|n| {
            let audio = tone(n, secs);
            let frames = audio.frames() as u64;
            LoadedStem {
                file: FileStem {
                    name: n.to_string(),
                    path: PathBuf::from(format!("/stems/{n}.flac")),
                    probe: Probe {
                        source_rate_hz: ENGINE_RATE_HZ,
                        source_channels: 2,
                        source_frames: frames,
                        frames,
                        truncated: None,
                    },
                },
                overview: Overview::of(&audio),
            }
        })
        .collect()
}

/// One frame as eframe runs it: `App::logic` (the drain), then `App::ui`.
fn frame(ui: &mut egui::Ui, app: &mut MixerApp) {
    app.poll(ui.input(|i| i.time));
    app.show(ui);
}

/// A window over a detached peer with stems bass, drums, keys, already
/// "ready" as peer `ME`.
fn detached() -> (Harness<'static, MixerApp>, DetachedPeer) {
    let (handle, peer) = PeerHandle::detached(3);
    let app = MixerApp::with_peer(
        &egui::Context::default(),
        Settings::default(),
        PeerTemplate::loopback("me"),
        handle,
        stems(&["bass", "drums", "keys"], 10.0),
    );
    peer.events
        .send(PeerEvent::Ready(Ready {
            peer_id: ME,
            name: "me".into(),
            listen: "127.0.0.1:7878".parse().unwrap(),
            advertise: "127.0.0.1:7878".parse().unwrap(),
            share: "127.0.0.1:7878".parse().unwrap(),
            stems: vec!["bass".into(), "drums".into(), "keys".into()],
            output: "null".into(),
            joining: false,
        }))
        .unwrap();
    let mut harness = Harness::builder()
        .with_size([1200.0, 760.0])
        .build_ui_state(frame, app);
    harness.run_steps(2);
    (harness, peer)
}

/// Every command the window sent since the last call.
fn sent(peer: &mut DetachedPeer) -> Vec<Command> {
    let mut out = vec![];
    while let Ok(c) = peer.commands.try_recv() {
        out.push(c);
    }
    out
}

fn decision(round: u64, state: SessionState, votes: &[(PeerId, Event, Verdict)]) -> PeerEvent {
    PeerEvent::Decided {
        decision: Decision {
            round: Round(round),
            apply_at_session_ns: 0,
            state,
            outcomes: votes
                .iter()
                .map(|&(voter, event, verdict)| VoteOutcome {
                    vote: Vote {
                        voter,
                        round: Round(round),
                        event,
                    },
                    verdict,
                })
                .collect(),
        },
        apply_at_mono_ns: None,
    }
}

/// Clicking Play casts a play vote; the window shows it pending until the
/// decision, then logs who voted what and which won, and the button turns
/// to Pause.
#[test]
fn play_click_is_a_vote_shown_pending_then_decided() {
    let (mut h, mut peer) = detached();
    h.get_by_label("Play").click();
    h.run_steps(2);
    assert_eq!(sent(&mut peer), vec![Command::Vote(Event::Play)]);

    peer.events.send(PeerEvent::Voted(Event::Play)).unwrap();
    h.run_steps(2);
    assert_eq!(h.state().view.pending.len(), 1);
    h.get_by_label_contains("play (waiting for its round");

    let mut state = SessionState::new(10_000_000_000, 3);
    state.timeline.playing = true;
    peer.events
        .send(decision(
            42,
            state,
            &[
                (ME, Event::Play, Verdict::Applied),
                (BOB, Event::Pause, Verdict::Overruled { by: ME }),
            ],
        ))
        .unwrap();
    h.run_steps(2);
    assert!(h.state().view.pending.is_empty());
    assert!(h.state().decided_playing());
    h.get_by_label("Pause");
    h.get_by_label("you: play (won)");
    h.get_by_label_contains("pause (lost to you)");
}

/// Space toggles play by vote too, and the arrow keys seek from the
/// playhead (repeated presses add up while the seek waits).
#[test]
fn keyboard_votes_play_and_seeks() {
    let (mut h, mut peer) = detached();
    h.key_press(Key::Space);
    h.run_steps(2);
    h.key_press(Key::ArrowRight);
    h.run_steps(2);
    let seek = Event::Seek {
        position_ns: 5_000_000_000,
    };
    assert_eq!(
        sent(&mut peer),
        vec![Command::Vote(Event::Play), Command::Vote(seek)]
    );
    peer.events.send(PeerEvent::Voted(seek)).unwrap();
    h.run_steps(2);
    h.key_press(Key::ArrowRight);
    h.run_steps(2);
    assert_eq!(
        sent(&mut peer),
        vec![Command::Vote(Event::Seek {
            position_ns: 10_000_000_000
        })]
    );
    h.key_press(Key::F1);
    h.run_steps(2);
    h.get_by_label("Keyboard shortcuts");
}

/// Moving a fader casts volume votes: dragging it down, steps with the
/// arrow keys, and Ctrl-click back to 0 dB; a double-click opens the editor.
#[test]
fn fader_moves_are_volume_votes() {
    let (mut h, mut peer) = detached();
    let volume = |cmds: Vec<Command>| -> Vec<(Channel, f32)> {
        cmds.into_iter()
            .filter_map(|c| match c {
                Command::Vote(Event::Volume { channel, gain_db }) => Some((channel, gain_db)),
                _ => None,
            })
            .collect()
    };

    // Drag the drums fader down by 60 px.
    let rect = h.get_by_label("drums fader").rect();
    let from = rect.center() - egui::vec2(0.0, rect.height() * 0.28);
    h.hover_at(from);
    h.run_steps(1);
    h.event(egui::Event::PointerButton {
        pos: from,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: Default::default(),
    });
    h.run_steps(1);
    for k in 1..=6 {
        h.hover_at(from + egui::vec2(0.0, 10.0 * k as f32));
        h.run_steps(1);
    }
    h.event(egui::Event::PointerButton {
        pos: from + egui::vec2(0.0, 60.0),
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: Default::default(),
    });
    h.run_steps(2);
    let votes = volume(sent(&mut peer));
    assert!(!votes.is_empty(), "a drag casts volume votes");
    assert!(votes.iter().all(|(c, _)| *c == Channel::Stem(1)));
    let last = votes.last().unwrap().1;
    assert!(last < -1.0, "dragged down: {last} dB");

    // The arrow keys step the focused fader, and keep the focus on it.
    h.get_by_label("bass fader").click();
    h.run_steps(3);
    h.key_press(Key::ArrowDown);
    h.run_steps(2);
    assert_eq!(
        volume(sent(&mut peer)).last(),
        Some(&(Channel::Stem(0), -0.5))
    );
    h.key_press(Key::ArrowDown);
    h.run_steps(2);
    assert_eq!(
        volume(sent(&mut peer)).last(),
        Some(&(Channel::Stem(0), -1.0)),
        "a second press steps again"
    );

    // Double-click the value to open its editor (typing into it is not
    // driven here: kittest's focus did not reach the editor; `parse_db` is
    // unit-tested).
    h.get_all_by_label("0.0 dB").next().unwrap().click();
    h.run_steps(1);
    h.get_all_by_label("0.0 dB").next().unwrap().click();
    h.run_steps(2);
    h.get_by_role(egui::accesskit::Role::TextInput);

    // Ctrl-click is the reset gesture.
    h.get_by_label("drums fader")
        .click_modifiers(egui::Modifiers::COMMAND);
    h.run_steps(2);
    assert_eq!(
        volume(sent(&mut peer)).last(),
        Some(&(Channel::Stem(1), 0.0))
    );
}

/// A decision from another peer shows in the strips: the fader and its
/// readout move, the mute button lights, the master follows.
#[test]
fn a_decision_is_reflected_in_the_strips() {
    let (mut h, peer) = detached();
    let mut state = SessionState::new(10_000_000_000, 3);
    state.channels[2].gain_db = -12.0;
    state.channels[1].muted = true;
    state.master.gain_db = f32::NEG_INFINITY;
    peer.events
        .send(decision(
            7,
            state,
            &[(
                BOB,
                Event::Volume {
                    channel: Channel::Stem(2),
                    gain_db: -12.0,
                },
                Verdict::Applied,
            )],
        ))
        .unwrap();
    h.run_steps(2);
    let now = 100.0;
    let app = h.state();
    assert_eq!(app.shown_gain_db(Channel::Stem(2), now), -12.0);
    assert!(app.decided_muted(Channel::Stem(1)));
    assert_eq!(app.shown_gain_db(Channel::Master, now), f32::NEG_INFINITY);
    h.get_by_label("-12.0 dB");
    h.get_by_label("-∞ dB");
    h.get_by_label_contains("keys -12.0 dB (won)");
}

/// Solo is local: a click sends a solo command, not a vote.
#[test]
fn solo_is_local_not_voted() {
    let (mut h, mut peer) = detached();
    h.get_all_by_label("S").nth(1).unwrap().click();
    h.run_steps(2);
    assert_eq!(sent(&mut peer), vec![Command::Solo { stem: 1, on: true }]);
    assert_eq!(h.state().settings.soloed, [StemKey::Name("drums".into())]);
}

/// The peer's events are drained in one place, once a frame (`poll`, which
/// eframe calls from `App::logic`): drawing alone takes none, and one frame
/// takes at most `MAX_EVENTS_PER_FRAME`, the rest waiting for the next.
#[test]
fn events_are_drained_once_a_frame_by_poll_only() {
    let (handle, peer) = PeerHandle::detached(3);
    let app = MixerApp::with_peer(
        &egui::Context::default(),
        Settings::default(),
        PeerTemplate::loopback("me"),
        handle,
        stems(&["bass", "drums", "keys"], 1.0),
    );
    let mut h = Harness::builder()
        .with_size([1200.0, 760.0])
        .build_ui_state(|ui, app: &mut MixerApp| app.show(ui), app);
    for i in 0..MAX_EVENTS_PER_FRAME + 10 {
        peer.events.send(PeerEvent::Error(format!("e{i}"))).unwrap();
    }
    h.run_steps(3);
    assert!(h.state().view.errors.is_empty(), "drawing drained events");
    h.state_mut().poll(1.0);
    let last = format!("e{}", MAX_EVENTS_PER_FRAME - 1);
    assert_eq!(h.state().view.errors.last(), Some(&last));
    h.state_mut().poll(1.1);
    let last = format!("e{}", MAX_EVENTS_PER_FRAME + 9);
    assert_eq!(h.state().view.errors.last(), Some(&last));
}

fn hash(name: &str) -> StemHash {
    let mut h = [0u8; 32];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h
}

/// The song as the peer reports it: these stems, in this order.
fn song(names: &[&str]) -> PeerEvent {
    PeerEvent::Song(
        (names.iter())
            .map(|n| SongStem {
                name: n.to_string(),
                hash: hash(n),
                size_bytes: 1000,
                source: StemSource::Local,
                chunks_have: 1,
                chunks: 1,
                hosts: vec![ME],
            })
            .collect(),
    )
}

/// Solos are remembered by stem hash, not by channel index. A joiner whose
/// files are bass, drums, keys but whose session plays keys, bass, drums
/// solos the stem on the strip it clicked (keys, not its file number 0,
/// bass); when the song comes in another order the solo follows keys to its
/// new channel, and so it does in the next run.
#[test]
fn solos_follow_their_stem_not_its_index() {
    let (mut h, mut peer) = detached();
    peer.events.send(song(&["keys", "bass", "drums"])).unwrap();
    h.run_steps(2);
    h.get_all_by_label("S").next().unwrap().click();
    h.run_steps(2);
    assert_eq!(sent(&mut peer), vec![Command::Solo { stem: 0, on: true }]);
    let keys = StemKey::Hash(synfony::protocol::hex(&hash("keys")));
    assert_eq!(h.state().settings.soloed, std::slice::from_ref(&keys));

    // The peer learned another order (its solos were cleared): keys is
    // soloed again where it sits now.
    peer.events.send(song(&["drums", "bass", "keys"])).unwrap();
    h.run_steps(2);
    assert_eq!(sent(&mut peer), vec![Command::Solo { stem: 2, on: true }]);
    // The same song again (a status, a fetched stem completing): nothing
    // is sent twice.
    peer.events.send(song(&["drums", "bass", "keys"])).unwrap();
    h.run_steps(2);
    assert_eq!(sent(&mut peer), vec![]);

    // The next run, in yet another order.
    let settings = h.state().settings.clone();
    let (handle, mut peer) = PeerHandle::detached(3);
    let app = MixerApp::with_peer(
        &egui::Context::default(),
        settings,
        PeerTemplate::loopback("me"),
        handle,
        stems(&["bass", "drums", "keys"], 10.0),
    );
    let mut h = Harness::builder()
        .with_size([1200.0, 760.0])
        .build_ui_state(frame, app);
    h.run_steps(2);
    assert_eq!(sent(&mut peer), vec![], "no hash known yet: nothing sent");
    peer.events.send(song(&["bass", "keys", "drums"])).unwrap();
    h.run_steps(2);
    assert_eq!(sent(&mut peer), vec![Command::Solo { stem: 1, on: true }]);
    assert_eq!(h.state().settings.soloed, [keys]);
}

/// A join address that is not HOST:PORT is refused in the window, with the
/// reason shown.
#[test]
fn a_bad_join_address_shows_an_error() {
    let (mut h, _peer) = detached();
    h.get_by_label("Join").click();
    h.run_steps(2);
    h.get_by_label_contains("is not HOST:PORT");
}

/// The sessions found on the network are listed (name, members, "private" for
/// a private one, "you are here" for this one), and a click on one's Join
/// restarts the peer to join it through its address.
#[test]
fn a_session_found_on_the_network_is_joined_with_a_click() {
    let (mut h, peer) = detached();
    h.get_by_label_contains("no other session found");
    let found = |name: &str, addr: &str, peers: u32, private: bool| FoundSession {
        name: name.into(),
        founder: PeerId(name.len() as u64),
        addr: addr.parse().unwrap(),
        peers,
        private,
        compatible: true,
    };
    let mut here = SessionState::new(10_000_000_000, 3);
    here.name = "mine".into();
    here.founder = PeerId(4); // found("mine", …)'s
    peer.events
        .send(PeerEvent::Decided {
            decision: Decision {
                round: Round(1),
                apply_at_session_ns: 0,
                state: here,
                outcomes: vec![],
            },
            apply_at_mono_ns: None,
        })
        .unwrap();
    peer.events
        .send(PeerEvent::Sessions(vec![
            found("mine", "10.0.0.9:7878", 1, false),
            found("Friday jam", "10.0.0.5:7878", 3, false),
            found("quartet", "10.0.0.7:7878", 1, true),
        ]))
        .unwrap();
    h.run_steps(2);
    h.get_by_label("Friday jam");
    h.get_by_label("3 peers");
    h.get_by_label("quartet (private)");
    h.get_by_label("you are here");
    // The address box's Join, then one per session not this one.
    let joins: Vec<_> = h.get_all_by_label("Join").collect();
    assert_eq!(joins.len(), 3);
    joins[1].click();
    h.run_steps(2);
    assert_eq!(
        h.state().controller.template.joins,
        vec!["10.0.0.5:7878".to_string()]
    );
}

/// With a real peer on loopback: Play is voted, decided and played; the
/// window follows it through events alone.
#[test]
fn a_real_peer_plays_what_the_window_votes() {
    let stems = stems(&["bass", "keys"], 5.0);
    let handle = PeerHandle::spawn(
        PeerTemplate::loopback("me")
            .options(vec![tone("bass", 5.0).into(), tone("keys", 5.0).into()]),
        Box::new(|| {}),
    )
    .expect("a peer starts on loopback");
    let app = MixerApp::with_peer(
        &egui::Context::default(),
        Settings::default(),
        PeerTemplate::loopback("me"),
        handle,
        stems,
    );
    let mut h = Harness::builder()
        .with_size([1200.0, 760.0])
        .build_ui_state(frame, app);
    let wait = |h: &mut Harness<'_, MixerApp>, what: &str, ok: &dyn Fn(&MixerApp) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok(h.state()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
            h.run_steps(1);
        }
    };
    wait(&mut h, "sync", &|a| {
        a.view.status.as_ref().is_some_and(|s| s.synced)
    });
    h.get_by_label("Play").click();
    h.run_steps(1);
    wait(&mut h, "the decision", &|a| a.decided_playing());
    wait(&mut h, "the engine to play", &|a| a.position_secs() > 0.2);
    let app = h.state();
    let me = app.view.my_id().unwrap();
    assert!(app.view.log.iter().any(|e| {
        e.votes
            .iter()
            .any(|v| v.0 == me && v.1 == Event::Play && v.2 == Verdict::Applied)
    }));
    assert!(app.view.pending.is_empty());
    let app = h.into_state();
    if let Some(p) = app.controller.peer {
        p.shutdown().expect("the peer stops cleanly");
    }
}

/// The settings survive a restart: what the window saves in eframe's storage
/// is what the next run reads back.
#[test]
fn settings_persist_through_eframe_storage() {
    #[derive(Default)]
    struct Memory(std::collections::HashMap<String, String>);
    impl eframe::Storage for Memory {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.to_string(), value);
        }
        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }
        fn flush(&mut self) {}
    }
    let (mut h, _peer) = detached();
    h.get_all_by_label("S").next().unwrap().click();
    h.get_by_label("hide peers").click();
    h.run_steps(2);
    let mut storage = Memory::default();
    eframe::App::save(h.state_mut(), &mut storage);
    let settings: Settings =
        eframe::get_value(&storage, synfony::ui::SETTINGS_KEY).expect("settings saved");
    assert_eq!(settings.soloed, [StemKey::Name("bass".into())]);
    assert!(settings.hide_peers);

    // Solos saved by name by an earlier version are kept, not lost with
    // the rest of the settings.
    let mut old = Memory::default();
    eframe::Storage::set_string(
        &mut old,
        synfony::ui::SETTINGS_KEY,
        r#"(join_address: "10.0.0.5:7878", solo: ["drums"])"#.into(),
    );
    let settings: Settings = eframe::get_value(&old, synfony::ui::SETTINGS_KEY).unwrap();
    assert_eq!(settings.join_address, "10.0.0.5:7878");
    let (handle, _peer) = PeerHandle::detached(3);
    let app = MixerApp::with_peer(
        &egui::Context::default(),
        settings,
        PeerTemplate::loopback("me"),
        handle,
        vec![],
    );
    assert_eq!(app.settings.soloed, [StemKey::Name("drums".into())]);
}

/// A peer that cannot start says why at once (the window shows it), rather
/// than hanging or panicking: here, its port is taken.
#[test]
fn a_peer_that_cannot_listen_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut opts = PeerTemplate::loopback("me");
    opts.listen = taken.local_addr().unwrap();
    let launched = synfony::ui::launch::launch(opts, vec![], vec![], None, || {});
    assert!(launched.handle.is_none());
    assert!(
        launched.errors.iter().any(|e| e.contains("cannot listen")),
        "{:?}",
        launched.errors
    );
}

/// The library panel shows each song's stems with where they play from and
/// who hosts them; removing a song is a command to the peer; files dropped
/// on the window are added to the library, with no restart.
#[test]
fn the_library_panel_shows_sources_and_hosts_and_adds_without_a_restart() {
    use synfony::protocol::library::SongId;
    use synfony::runtime::library::{LibrarySong, LibraryStem};
    let (mut h, mut peer) = detached();
    peer.events
        .send(PeerEvent::PeerUp(synfony::protocol::message::PeerInfo {
            peer_id: BOB,
            name: "bob".into(),
            addr: "127.0.0.1:7879".parse().unwrap(),
        }))
        .unwrap();
    let stem = |name: &str, source, hosts: Vec<PeerId>, fetching| LibraryStem {
        name: name.into(),
        hash: hash(name),
        size_bytes: 1000,
        frames: 48_000 * 60,
        hosts,
        source,
        fetching,
        path: (source == StemSource::Local).then(|| PathBuf::from(format!("/stems/{name}.flac"))),
    };
    let id = SongId::of_name("Solar");
    peer.events
        .send(PeerEvent::Library(vec![LibrarySong {
            id,
            name: "Solar".into(),
            frames: 48_000 * 60,
            stems: vec![
                stem("bass", StemSource::Local, vec![ME], None),
                stem("keys", StemSource::Remote, vec![BOB], Some((3, 12))),
                stem("vocals", StemSource::Missing, vec![], None),
            ],
        }]))
        .unwrap();
    h.run_steps(2);
    h.get_by_label_contains("Solar").click();
    h.run_steps(2);
    h.get_by_label("here");
    h.get_by_label("fetching 25%");
    h.get_by_label("missing");
    h.get_by_label("bob");
    h.get_by_label("no host");
    h.get_by_label("Remove").click();
    h.run_steps(2);
    assert_eq!(
        sent(&mut peer),
        vec![Command::Remove {
            song: id.hex(),
            stem: None
        }]
    );
    h.state_mut().apply(synfony::ui::app::Action::AddStems(vec![
        "/music/Solar".into(),
    ]));
    assert_eq!(
        sent(&mut peer),
        vec![Command::Add {
            song: None,
            paths: vec!["/music/Solar".into()]
        }]
    );
    assert!(
        !h.state().controller.is_launching(),
        "adding restarted the peer"
    );

    // Load and Queue are votes (no restart).
    h.run_steps(2);
    h.get_by_label("Load").click();
    h.run_steps(2);
    assert_eq!(sent(&mut peer), vec![Command::Load(id.hex())]);
    h.get_by_label("Queue").click();
    h.run_steps(2);
    assert_eq!(sent(&mut peer), vec![Command::Queue(id.hex())]);
    assert!(
        !h.state().controller.is_launching(),
        "loading restarted the peer"
    );

    // The decided set list shows by name; × takes an entry off; N and P
    // vote next and prev.
    let mut state = SessionState::new(60_000_000_000, 3);
    state.queue = vec![synfony::protocol::SongRef {
        song: id,
        ..synfony::protocol::SongRef::anonymous(60_000_000_000, 3)
    }];
    peer.events.send(decision(9, state, &[])).unwrap();
    h.run_steps(2);
    h.get_by_label("next: Solar");
    h.get_by_label("×").click();
    h.run_steps(2);
    assert_eq!(sent(&mut peer), vec![Command::Unqueue(0)]);
    h.state_mut()
        .apply(synfony::ui::app::Action::MoveQueued { from: 1, to: 0 });
    assert_eq!(sent(&mut peer), vec![Command::Move { from: 1, to: 0 }]);
    h.key_press(egui::Key::N);
    h.run_steps(2);
    h.key_press(egui::Key::P);
    h.run_steps(2);
    assert_eq!(
        sent(&mut peer),
        vec![Command::Vote(Event::Next), Command::Vote(Event::Prev)]
    );
}
