//! The async drivers of the sans-IO state machines: one task per door shard, one task per
//! call, the CDR consumer and housekeeping.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pbx::Now;
use pbx::call::{Call, CallOutput, MediaAnchors, MediaCommand, NewCall, Side};
use pbx::cdr::CdrBuilder;
use pbx::events::{CallEvent, CallEventKind, LegQuality, MediaCounters, QualityAlerts};
use pbx::ids::IdGen;
use pbx::location::{Binding, BindingChange};
use sdp::Anchor;
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use crate::core::{CallMsg, Core, InboundRequest};
use crate::transport::OnError;
use crate::writer::{Reply, WriteOp};

/// The current time, as the state machines take it.
pub fn now() -> Now {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Now { instant: Instant::now(), unix_ms }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

/// Converts a registration change for the store.
pub fn to_store(change: BindingChange) -> store::BindingChange {
    match change {
        BindingChange::Upsert(aor, b) => store::BindingChange::Upsert(store::BindingRecord {
            tenant_id: aor.tenant_id,
            extension: aor.extension,
            contact: b.uri.to_string(),
            expires_at_ms: b.expires_at_ms,
            call_id: b.call_id,
            cseq: i64::from(b.cseq),
            q: b.q.map(f64::from),
            instance_id: b.instance,
            reg_id: b.reg_id.map(i64::from),
            transport: b.flow.transport.uri_param().to_owned(),
            source: b.flow.remote.to_string(),
            local: b.flow.local.to_string(),
            connection_id: b.flow.connection.map(|c| c as i64),
            user_agent: b.user_agent,
            registered_at_ms: b.registered_at_ms,
        }),
        BindingChange::Remove(aor, b) => store::BindingChange::Remove {
            tenant_id: aor.tenant_id,
            extension: aor.extension,
            contact: b.uri.to_string(),
        },
        BindingChange::RemoveAll(aor) => {
            store::BindingChange::RemoveAll { tenant_id: aor.tenant_id, extension: aor.extension }
        }
    }
}

/// A binding read back from the store (its connection, if any, is gone).
pub fn from_store(r: store::BindingRecord) -> Option<(pbx::location::Aor, Binding)> {
    let uri = sip::Uri::parse(&r.contact).ok()?;
    let transport = pbx::flow::Transport::from_token(&r.transport)?;
    let flow =
        pbx::flow::Flow { transport, local: r.local.parse().ok()?, remote: r.source.parse().ok()?, connection: None };
    Some((
        pbx::location::Aor { tenant_id: r.tenant_id, extension: r.extension },
        Binding {
            uri,
            expires_at_ms: r.expires_at_ms,
            q: r.q.map(|q| q as f32),
            call_id: r.call_id,
            cseq: u32::try_from(r.cseq).unwrap_or(0),
            flow,
            instance: r.instance_id,
            reg_id: r.reg_id.and_then(|r| u32::try_from(r).ok()),
            user_agent: r.user_agent,
            registered_at_ms: r.registered_at_ms,
        },
    ))
}

fn side(s: Side) -> media::Side {
    match s {
        Side::A => media::Side::A,
        Side::B => media::Side::B,
    }
}

/// Allocates media for a new call and starts its task.
pub fn start_call(ctx: &Arc<Core>, nc: NewCall, now: Now) {
    let transports = &ctx.transports;
    let a_ip = transports.local_ip_for(nc.flow.remote.ip());
    let b_ip = nc.targets.first().map(|t| transports.local_ip_for(t.flow.remote.ip())).unwrap_or(a_ip);
    let session = match ctx.relay.allocate(a_ip, b_ip) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no media ports for a new call");
            let mut r = sip::Response::to_request(&nc.invite, 503, Some("No Media Resources"), Some("sb-err"));
            r.headers.push(sip::HeaderName::RetryAfter, "10");
            transports.send(nc.flow.response_flow(&nc.info.via), Bytes::from(r.to_bytes()), None);
            return;
        }
    };
    let anchors = MediaAnchors {
        a: Anchor { ip: a_ip, rtp_port: session.local(media::Side::A).rtp },
        b: Anchor { ip: b_ip, rtp_port: session.local(media::Side::B).rtp },
    };
    let ids = match ctx.ids.lock() {
        Ok(mut g) => g.fork(),
        Err(_) => IdGen::new(now.unix_ms as u64),
    };
    let call = Call::new(nc, anchors, ctx.call_cfg.clone(), ids, now);
    let (tx, rx) = mpsc::unbounded_channel();
    ctx.calls.insert(&call.sip_call_ids(), tx.clone());
    let media_tx = tx.clone();
    let sink: media::EventSink = Arc::new(move |ev| {
        let _ = media_tx.send(CallMsg::Media(ev));
    });
    if let Err(e) = session.set_event_sink(sink) {
        warn!(error = %e, "relay refused the media event sink");
    }
    let span = info_span!("call", id = %call.id(), tenant = call.tenant_id());
    tokio::spawn(run_call(call, session, rx, tx, ctx.clone()).instrument(span));
}

async fn run_call(
    mut call: Call,
    session: media::MediaSession,
    mut rx: mpsc::UnboundedReceiver<CallMsg>,
    me: mpsc::UnboundedSender<CallMsg>,
    ctx: Arc<Core>,
) {
    let call_ids: Vec<String> = call.sip_call_ids().iter().map(|s| (*s).to_owned()).collect();
    // Media goes as soon as the call ends; the task lingers a while longer only to absorb
    // retransmissions, and must not hold relay ports meanwhile.
    let mut session = Some(session);
    let check_every = ctx.media_timeout.map(|t| (t / 4).clamp(Duration::from_millis(200), Duration::from_secs(5)));
    let mut next_check = check_every.map(|d| Instant::now() + d);
    let quality_every = ctx.quality_interval;
    let mut next_quality = quality_every.map(|d| Instant::now() + d);
    let mut alerts = QualityAlerts::new(ctx.mos_alert_threshold);
    // Finished by its writer thread once the relay session (and its tap) is gone.
    let mut recording: Option<media::record::Recording> = None;
    loop {
        while let Some(o) = call.poll_output() {
            match o {
                CallOutput::Send { flow, bytes, tx } => {
                    let on_error = tx.map(|tx| {
                        let me = me.clone();
                        Box::new(move || {
                            let _ = me.send(CallMsg::SendError(tx));
                        }) as OnError
                    });
                    ctx.transports.send(flow, bytes, on_error);
                }
                CallOutput::Media(MediaCommand::Transcode(spec)) => {
                    if let Some(session) = &session {
                        let plan = spec.as_ref().and_then(|s| transcode_plan(s, ctx.opus_complexity));
                        if spec.is_some() && plan.is_none() {
                            warn!(?spec, "codecs the relay cannot transcode");
                        }
                        if let Some(spec) = &spec {
                            info!(caller = %spec.a.encoding, callee = %spec.b.encoding, "transcoding between the legs");
                        }
                        if let Err(e) = session.set_transcoding(plan) {
                            warn!(error = %e, "relay refused transcoding");
                        }
                    }
                }
                CallOutput::Media(MediaCommand::Srtp { side: s, keys }) => {
                    let keys = keys.map(|k| media::SrtpKeys { inbound: k.inbound, outbound: k.outbound });
                    if let Some(session) = &session
                        && let Err(e) = session.set_srtp(side(s), keys.as_ref())
                    {
                        warn!(error = %e, "relay refused SRTP keys");
                    }
                }
                CallOutput::Media(MediaCommand::SendDtmf { side: to, digit, duration_ms, telephone_event }) => {
                    let source = match telephone_event {
                        Some((payload_type, clock_rate)) => {
                            Some(media::player::Source::Event { digit, duration_ms, payload_type, clock_rate })
                        }
                        None => audio::tone::dtmf_spec(digit, duration_ms).map(media::player::Source::Tone),
                    };
                    if let (Some(session), Some(source)) = (&session, source) {
                        let _ = session.play(side(to), Some(source));
                    }
                }
                CallOutput::Media(MediaCommand::MusicOnHold { side: held, on }) => {
                    // Nothing to start when no music is configured (call control then never asks).
                    let source = if on { ctx.music_on_hold.clone() } else { None };
                    if let Some(session) = &session
                        && (source.is_some() || !on)
                    {
                        let _ = session.play(side(held), source);
                    }
                }
                CallOutput::Media(MediaCommand::SetPeer { side: s, peer }) => {
                    let events: Vec<media::TelephoneEventType> = peer
                        .telephone_events
                        .iter()
                        .flatten()
                        .map(|t| media::TelephoneEventType { payload_type: t.payload_type, clock_rate: t.clock_rate })
                        .collect();
                    let peer = media::PeerMedia { rtp: peer.rtp, rtcp: Some(peer.rtcp), rtcp_mux: peer.rtcp_mux };
                    if let Some(session) = &session {
                        if let Err(e) = session.set_peer(side(s), peer) {
                            warn!(error = %e, "relay refused a peer address");
                        }
                        let _ = session.set_telephone_events(side(s), &events);
                    }
                }
                CallOutput::Event(ev) => {
                    let ended = matches!(ev.kind, CallEventKind::Ended { .. });
                    if ev.kind == CallEventKind::Answered
                        && let (Some(dir), Some(s), None) = (&ctx.recordings, &session, &recording)
                    {
                        let path = dir.join(ev.tenant_id.to_string()).join(format!("{}.wav", ev.call));
                        match s.start_recording(&path, ctx.record_mode) {
                            Ok(r) => recording = Some(r),
                            Err(e) => warn!(error = %e, path = %path.display(), "cannot record the call"),
                        }
                    }
                    let mut ev = with_media(ev, session.as_ref(), call.srtp_suites());
                    if let (CallEventKind::Ended { recording: path, .. }, Some(r)) = (&mut ev.kind, &recording) {
                        *path = Some(r.path().display().to_string());
                    }
                    ctx.events.publish(ev);
                    if ended {
                        session = None;
                    }
                }
            }
        }
        if call.is_finished() {
            break;
        }
        let mut deadline = call.poll_timeout();
        if call.is_answered() {
            for c in [next_check, next_quality].into_iter().flatten() {
                deadline = Some(deadline.map_or(c, |d| d.min(c)));
            }
        }
        let sleep = deadline.map(tokio::time::Instant::from_std).unwrap_or_else(far_future);
        tokio::select! {
            msg = rx.recv() => {
                let n = now();
                match msg {
                    Some(CallMsg::Request(inbound)) => {
                        let InboundRequest { req, info, flow } = *inbound;
                        call.handle_request(req, info, flow, n);
                    }
                    Some(CallMsg::Response(r)) => {
                        let (resp, info) = *r;
                        call.handle_response(resp, info, n);
                    }
                    Some(CallMsg::SendError(tx)) => call.handle_send_error(tx, n),
                    Some(CallMsg::Media(media::MediaEvent::Dtmf { side: from, digit, duration, in_band, .. })) => {
                        let from = if from == media::Side::A { Side::A } else { Side::B };
                        let duration_ms = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
                        call.handle_media_dtmf(from, digit, duration_ms, in_band, n);
                    }
                    // Nothing in a two-party call plays once yet (IVR and voicemail will).
                    Some(CallMsg::Media(media::MediaEvent::PlaybackFinished { .. })) => {}
                    Some(CallMsg::Shutdown) => call.shutdown(n),
                    None => break,
                }
            }
            _ = tokio::time::sleep_until(sleep) => {
                let n = now();
                if let (Some(c), Some(every), Some(limit)) = (next_check, check_every, ctx.media_timeout)
                    && c <= n.instant
                {
                    next_check = Some(n.instant + every);
                    if call.is_answered() && !call.is_on_hold() && session.as_ref().is_some_and(|s| s.idle_for(n.instant) >= limit) {
                        call.handle_media_timeout(n);
                    }
                }
                if let (Some(q), Some(every), Some(session)) = (next_quality, quality_every, session.as_ref())
                    && q <= n.instant
                {
                    next_quality = Some(n.instant + every);
                    if call.is_answered() {
                        let (a, b) = (leg_quality(session, media::Side::A), leg_quality(session, media::Side::B));
                        let event = |kind| CallEvent { call: call.id(), tenant_id: call.tenant_id(), at_ms: n.unix_ms, kind };
                        ctx.events.publish(event(CallEventKind::Quality { a, b }));
                        for (caller_leg, mos) in alerts.observe(&a, &b) {
                            let threshold = ctx.mos_alert_threshold;
                            ctx.events.publish(event(CallEventKind::QualityAlert { caller_leg, mos, threshold }));
                        }
                    }
                }
                call.handle_timeout(n);
            }
        }
    }
    ctx.calls.remove(&call_ids);
}

/// The relay's plan for what call control negotiated.
fn transcode_plan(spec: &pbx::call::TranscodeSpec, opus_complexity: u8) -> Option<media::TranscodePlan> {
    use media::transcode::{Codec, DirectionPlan};
    let a = (Codec::from_rtpmap(&spec.a.encoding, spec.a.clock_rate)?, spec.a.payload_type);
    let b = (Codec::from_rtpmap(&spec.b.encoding, spec.b.clock_rate)?, spec.b.payload_type);
    // What a leg sends unless it said otherwise: 20 ms (RFC 3551, RFC 7587).
    let (a_ptime, b_ptime) = (spec.ptime.0.unwrap_or(20), spec.ptime.1.unwrap_or(20));
    // What the receiving leg asked of Opus (FEC, DTX, bandwidth) in its fmtp.
    let opus_of = |f: &sdp::Format| media::transcode::OpusParams {
        complexity: opus_complexity,
        ..media::transcode::parse_opus_fmtp(f.fmtp.as_deref().unwrap_or(""))
    };
    Some(media::TranscodePlan {
        a_to_b: DirectionPlan::new(a, b)
            .with_telephone_event(spec.telephone_event)
            .with_ptime(a_ptime, b_ptime)
            .with_opus(opus_of(&spec.b)),
        b_to_a: DirectionPlan::new(b, a)
            .with_telephone_event(spec.telephone_event.map(|(a, b)| (b, a)))
            .with_ptime(b_ptime, a_ptime)
            .with_opus(opus_of(&spec.a)),
    })
}

/// One leg's quality as the relay last published it, with its MOS. The relay does not know
/// the codec; G.711 with concealment and the wideband codecs share the E-model figures used.
fn leg_quality(session: &media::MediaSession, side: media::Side) -> LegQuality {
    let q = session.quality(side);
    LegQuality {
        packets: q.packets,
        loss_pct: q.loss_pct,
        jitter_ms: q.jitter_ms,
        rtt_ms: q.rtt_ms,
        peer_loss_pct: q.peer_loss_pct,
        mos: q.mos(media::emodel::CodecImpairment::G711_PLC),
    }
}

/// Adds the relay's counters to the event that ends a call.
fn with_media(mut ev: CallEvent, session: Option<&media::MediaSession>, srtp: [Option<&str>; 2]) -> CallEvent {
    if let (CallEventKind::Ended { media, .. }, Some(session)) = (&mut ev.kind, session) {
        let s = session.stats();
        *media = Some(MediaCounters {
            packets_a_to_b: s.a.received_packets,
            packets_b_to_a: s.b.received_packets,
            bytes_a_to_b: s.a.received_bytes,
            bytes_b_to_a: s.b.received_bytes,
            quality_a: leg_quality(session, media::Side::A),
            quality_b: leg_quality(session, media::Side::B),
            srtp_a: srtp[0].map(str::to_owned),
            srtp_b: srtp[1].map(str::to_owned),
            srtp_rejected_a: s.a.dropped_srtp,
            srtp_rejected_b: s.b.dropped_srtp,
        });
    }
    ev
}

/// Folds events into CDRs and hands them to the writer, until the bus closes.
pub async fn run_cdr_consumer(
    mut events: mpsc::UnboundedReceiver<CallEvent>,
    writer: mpsc::UnboundedSender<WriteOp>,
    id_prefix: u64,
) {
    let mut builder = CdrBuilder::default();
    while let Some(ev) = events.recv().await {
        if let Some(cdr) = builder.handle(&ev) {
            let record = store::CdrRecord {
                id: format!("{id_prefix:016x}-{}", cdr.call),
                tenant_id: cdr.tenant_id,
                call_id: cdr.sip_call_id.clone(),
                caller: cdr.caller.clone(),
                callee: cdr.callee.clone(),
                started_at_ms: cdr.started_at_ms,
                answered_at_ms: cdr.answered_at_ms,
                ended_at_ms: cdr.ended_at_ms,
                duration_ms: cdr.duration_ms(),
                billable_ms: cdr.billable_ms(),
                disposition: cdr.disposition.to_owned(),
                hangup_cause: cdr.hangup_cause.clone(),
                hangup_status: cdr.hangup_status.map(i32::from),
                initiator: cdr.initiator.to_owned(),
                packets_a_to_b: cdr.media.packets_a_to_b as i64,
                packets_b_to_a: cdr.media.packets_b_to_a as i64,
                bytes_a_to_b: cdr.media.bytes_a_to_b as i64,
                bytes_b_to_a: cdr.media.bytes_b_to_a as i64,
                quality_a: stored_quality(&cdr.media.quality_a),
                quality_b: stored_quality(&cdr.media.quality_b),
                recording: cdr.recording.clone(),
                a_srtp: cdr.media.srtp_a.clone(),
                b_srtp: cdr.media.srtp_b.clone(),
                a_srtp_rejected: cdr.media.srtp_rejected_a as i64,
                b_srtp_rejected: cdr.media.srtp_rejected_b as i64,
            };
            if writer.send(WriteOp::Cdr(Box::new(record))).is_err() {
                warn!("store writer gone; a CDR was not written");
            }
        }
    }
}

/// A leg's quality for its CDR: nothing when no RTP came from it.
fn stored_quality(q: &LegQuality) -> store::LegQuality {
    if q.packets == 0 {
        return store::LegQuality::default();
    }
    // Two decimals are plenty, and keep the figures readable in `cdr list`.
    let round = |v: f64| (v * 100.0).round() / 100.0;
    store::LegQuality {
        loss_pct: Some(round(q.loss_pct)),
        jitter_ms: Some(round(q.jitter_ms)),
        rtt_ms: q.rtt_ms.map(round),
        mos: q.mos.map(round),
    }
}

/// Drops expired registrations (memory and store) every `every`.
pub async fn run_housekeeping(ctx: Arc<Core>, auth: Arc<pbx::auth::Authenticator>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let n = now();
        let gone = ctx.location.purge_expired(n.unix_ms);
        if !gone.is_empty() {
            let changes = gone.into_iter().map(|(aor, b)| to_store(BindingChange::Remove(aor, b))).collect();
            let _ = ctx.writer.send(WriteOp::Bindings(changes, Reply::None));
        }
        auth.purge((n.unix_ms / 1000) as u64);
    }
}
