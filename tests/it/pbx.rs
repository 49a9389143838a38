//! A scripted Asterisk for fault tests: it accepts AMI clients one after another (a server
//! that restarts logs in again), answers `CoreShowChannels` with the channels the test says
//! are up, and writes AMI events built from the same field names Asterisk 18 uses.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub struct ScriptedPbx {
    pub addr: String,
    /// The logged-in client's outgoing queue (the newest login wins).
    current: Arc<Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>>,
    /// `CoreShowChannel` bodies (without ActionID) listed on the next `CoreShowChannels`.
    listing: Arc<Mutex<Vec<String>>>,
    /// Fires once per login.
    pub logins: mpsc::UnboundedReceiver<()>,
    /// Every action received other than Ping, as (lower-case key, value) pairs in order.
    pub actions: mpsc::UnboundedReceiver<Vec<(String, String)>>,
    /// Replies set by the test per action (lower-case name), without ActionID: the next such
    /// action gets it instead of the default answer.
    replies: Arc<Mutex<std::collections::HashMap<String, String>>>,
}

impl ScriptedPbx {
    pub async fn start() -> ScriptedPbx {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind pbx");
        let addr = listener.local_addr().expect("addr").to_string();
        let current: Arc<Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>> = Arc::default();
        let listing: Arc<Mutex<Vec<String>>> = Arc::default();
        let (login_tx, logins) = mpsc::unbounded_channel();
        let (actions_tx, actions) = mpsc::unbounded_channel();
        let replies: Arc<Mutex<std::collections::HashMap<String, String>>> = Arc::default();
        let (cur, list, rep) = (current.clone(), listing.clone(), replies.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                let (read, mut write) = sock.into_split();
                let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
                let _ = tx.send(b"Asterisk Call Manager/7.0.3\r\n".to_vec());
                tokio::spawn(async move {
                    while let Some(chunk) = rx.recv().await {
                        // an empty chunk is the test closing the connection (a PBX restart)
                        if chunk.is_empty() || write.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = write.shutdown().await;
                });
                let (cur, list, login_tx) = (cur.clone(), list.clone(), login_tx.clone());
                let rep = rep.clone();
                let actions_tx = actions_tx.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(read).lines();
                    let mut action = Vec::<(String, String)>::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let line = line.trim_end().to_string();
                        if !line.is_empty() {
                            if let Some((k, v)) = line.split_once(':') {
                                action.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                            }
                            continue;
                        }
                        let get = |k: &str| {
                            action
                                .iter()
                                .find(|(kk, _)| kk == k)
                                .map(|(_, v)| v.clone())
                        };
                        let id = get("actionid")
                            .map(|i| format!("ActionID: {i}\r\n"))
                            .unwrap_or_default();
                        let name = get("action").unwrap_or_default().to_ascii_lowercase();
                        if name != "ping" {
                            let _ = actions_tx.send(action.clone());
                        }
                        let set = rep.lock().unwrap().remove(&name);
                        let paused = get("paused")
                            .is_some_and(|p| p == "1" || p.eq_ignore_ascii_case("true"));
                        let reply = match name.as_str() {
                            _ if set.is_some() => {
                                let body = set.unwrap_or_default();
                                format!("{body}{id}\r\n")
                            }
                            // As Asterisk answers (capture 19); QueueMemberPause follows from the test.
                            "queuepause" if paused => format!("Response: Success\r\n{id}Message: Interface paused successfully\r\n\r\n"),
                            "queuepause" => format!("Response: Success\r\n{id}Message: Interface unpaused successfully\r\n\r\n"),
                            "login" => {
                                *cur.lock().unwrap() = Some(tx.clone());
                                let _ = login_tx.send(());
                                format!("Response: Success\r\n{id}Message: Authentication accepted\r\n\r\n")
                            }
                            "coreshowchannels" => {
                                let items = list.lock().unwrap().clone();
                                let mut r = format!("Response: Success\r\n{id}EventList: start\r\nMessage: Channels will follow\r\n\r\n");
                                for item in &items {
                                    r.push_str(&format!("Event: CoreShowChannel\r\n{id}{item}\r\n"));
                                }
                                r.push_str(&format!("Event: CoreShowChannelsComplete\r\n{id}EventList: Complete\r\nListItems: {}\r\n\r\n", items.len()));
                                r
                            }
                            "queuestatus" => format!(
                                "Response: Success\r\n{id}EventList: start\r\nMessage: Queue status will follow\r\n\r\n\
                                 Event: QueueStatusComplete\r\n{id}EventList: Complete\r\nListItems: 0\r\n\r\n"
                            ),
                            "ping" => format!("Response: Success\r\n{id}Ping: Pong\r\nTimestamp: 1.0\r\n\r\n"),
                            // Async Originate: queued; the test sends the OriginateResponse.
                            "originate" => format!("Response: Success\r\n{id}Message: Originate successfully queued\r\n\r\n"),
                            _ => format!("Response: Success\r\n{id}\r\n"),
                        };
                        let _ = tx.send(reply.into_bytes());
                        action.clear();
                    }
                });
            }
        });
        ScriptedPbx {
            addr,
            current,
            listing,
            logins,
            actions,
            replies,
        }
    }

    /// The next `action` (lower-case name) gets `body` as its reply (the ActionID is added at
    /// the end; `body` ends with CRLF).
    pub fn reply_next(&self, action: &str, body: &str) {
        self.replies
            .lock()
            .unwrap()
            .insert(action.to_string(), body.to_string());
    }

    /// Writes bytes to the logged-in client, exactly as given.
    pub fn send(&self, bytes: impl AsRef<[u8]>) {
        let cur = self.current.lock().unwrap();
        cur.as_ref()
            .expect("a client is logged in")
            .send(bytes.as_ref().to_vec())
            .expect("client connection open");
    }

    /// Closes the logged-in client's connection, as a PBX that stops or restarts does.
    pub fn close(&self) {
        if let Some(tx) = self.current.lock().unwrap().take() {
            let _ = tx.send(Vec::new());
        }
    }

    /// The channels listed on the next `CoreShowChannels`.
    pub fn set_listing(&self, items: Vec<String>) {
        *self.listing.lock().unwrap() = items;
    }

    pub async fn wait_login(&mut self) {
        tokio::time::timeout(Duration::from_secs(15), self.logins.recv())
            .await
            .expect("the server logs in to the PBX")
            .expect("pbx running");
    }
}

/// One call of a script: the caller's leg and, once offered, an agent's leg.
#[derive(Clone)]
pub struct ScriptCall {
    /// The Linkedid, which is the caller leg's Uniqueid.
    pub id: String,
    pub agent_leg: String,
    pub number: String,
    /// CallerIDName as the trunk sends it.
    pub name: String,
    pub ext: String,
}

impl ScriptCall {
    pub fn new(n: u32, number: &str, ext: &str) -> ScriptCall {
        ScriptCall {
            id: format!("1700000000.{n}"),
            agent_leg: format!("1700000000.{}", 1000 + n),
            number: number.into(),
            name: String::new(),
            ext: ext.into(),
        }
    }

    fn caller_channel(&self) -> String {
        format!("PJSIP/trunk-{:08x}", self.seq())
    }

    fn agent_channel(&self) -> String {
        format!("PJSIP/{}-{:08x}", self.ext, 0x1000 + self.seq())
    }

    fn seq(&self) -> u32 {
        self.id
            .rsplit('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Newchannel, QueueCallerJoin, the agent leg and AgentCalled: the phone rings.
    pub fn ring(&self) -> String {
        let (id, num, ch, name) = (&self.id, &self.number, self.caller_channel(), &self.name);
        let (leg, agent_ch, ext) = (&self.agent_leg, self.agent_channel(), &self.ext);
        format!(
            "Event: Newchannel\r\nChannel: {ch}\r\nChannelState: 4\r\nChannelStateDesc: Ring\r\nCallerIDNum: {num}\r\nCallerIDName: {name}\r\nExten: 0773689225\r\nContext: from-trunk\r\nUniqueid: {id}\r\nLinkedid: {id}\r\n\r\n\
             Event: QueueCallerJoin\r\nChannel: {ch}\r\nCallerIDNum: {num}\r\nQueue: vaccine\r\nPosition: 1\r\nCount: 1\r\nUniqueid: {id}\r\nLinkedid: {id}\r\n\r\n\
             Event: Newchannel\r\nChannel: {agent_ch}\r\nChannelState: 0\r\nChannelStateDesc: Down\r\nCallerIDNum: {ext}\r\nExten: {ext}\r\nUniqueid: {leg}\r\nLinkedid: {id}\r\n\r\n\
             Event: AgentCalled\r\nChannel: {ch}\r\nCallerIDNum: {num}\r\nUniqueid: {id}\r\nLinkedid: {id}\r\nDestChannel: {agent_ch}\r\nDestUniqueid: {leg}\r\nDestLinkedid: {id}\r\nQueue: vaccine\r\nInterface: PJSIP/{ext}\r\nMemberName: PJSIP/{ext}\r\n\r\n"
        )
    }

    /// The agent answers after `hold_s` seconds in the queue.
    pub fn answer(&self, hold_s: u32) -> String {
        let (id, ch, ext, leg) = (&self.id, self.caller_channel(), &self.ext, &self.agent_leg);
        let agent_ch = self.agent_channel();
        format!(
            "Event: DialEnd\r\nChannel: {ch}\r\nUniqueid: {id}\r\nLinkedid: {id}\r\nDestChannel: {agent_ch}\r\nDestUniqueid: {leg}\r\nDialStatus: ANSWER\r\n\r\n\
             Event: AgentConnect\r\nChannel: {ch}\r\nUniqueid: {id}\r\nLinkedid: {id}\r\nDestChannel: {agent_ch}\r\nDestUniqueid: {leg}\r\nQueue: vaccine\r\nInterface: PJSIP/{ext}\r\nMemberName: PJSIP/{ext}\r\nHoldTime: {hold_s}\r\nRingTime: 2\r\n\r\n"
        )
    }

    /// The caller hangs up (the agent leg follows).
    pub fn hangup(&self) -> String {
        let (id, ch, leg, agent_ch) = (
            &self.id,
            self.caller_channel(),
            &self.agent_leg,
            self.agent_channel(),
        );
        format!(
            "Event: Hangup\r\nChannel: {ch}\r\nUniqueid: {id}\r\nLinkedid: {id}\r\nCause: 16\r\nCause-txt: Normal Clearing\r\n\r\n\
             Event: Hangup\r\nChannel: {agent_ch}\r\nUniqueid: {leg}\r\nLinkedid: {id}\r\nCause: 16\r\nCause-txt: Normal Clearing\r\n\r\n"
        )
    }

    /// The `CoreShowChannel` items of this call as it stands: answered (both legs up) or
    /// ringing.
    pub fn listing(&self, answered: bool) -> Vec<String> {
        let (caller_state, agent_state) = if answered {
            ("6\r\nChannelStateDesc: Up", "6\r\nChannelStateDesc: Up")
        } else {
            (
                "4\r\nChannelStateDesc: Ring",
                "5\r\nChannelStateDesc: Ringing",
            )
        };
        vec![
            format!(
                "Channel: {}\r\nUniqueid: {}\r\nLinkedid: {}\r\nChannelState: {caller_state}\r\nCallerIDNum: {}\r\nCallerIDName: \r\nExten: 0773689225\r\nApplication: Queue\r\n",
                self.caller_channel(), self.id, self.id, self.number
            ),
            format!(
                "Channel: {}\r\nUniqueid: {}\r\nLinkedid: {}\r\nChannelState: {agent_state}\r\nCallerIDNum: {}\r\nExten: {}\r\nApplication: AppQueue\r\n",
                self.agent_channel(), self.agent_leg, self.id, self.ext, self.ext
            ),
        ]
    }
}
