//! The arena: a second game on Hearth, written only on `hearth::prelude`, to show what a game
//! of your own looks like next to the built-in demo (which it replaces, not extends).
//!
//! Players walk a small square arena (`walk`), pick items up into a persistent [`Inventory`]
//! (`pickup`), and talk to whoever stands within [`HEARING`] (`chat`). Position and inventory
//! are sections of the player record (`position`, `inventory`): saved by Hearth when they
//! change, restored at login. The messages on the wire, one JSON object per line:
//!
//! | client sends                          | server answers                                   |
//! |---------------------------------------|--------------------------------------------------|
//! | `{"type":"walk","dx":3,"dy":-1}`      | `{"type":"walked","x":3.0,"y":-1.0}`             |
//! | `{"type":"pickup","item":"gem"}`      | `{"type":"picked_up","item":"gem","count":1}` or the standard `{"type":"error","code":"unknown_item"\|"stack_full","message":..}` |
//! | `{"type":"chat","text":"hi"}`         | everyone near: `{"type":"chat_line","from":7,"text":"hi"}`; the sender alone on refusal: `{"type":"error","code":"empty"\|"too_long","message":..}` |
//!
//! A refusal is Hearth's standard `error` with the arena's own codes ([`Refusals`]), so a
//! client handles one error shape; a request sent with an `id` gets it back in its answer
//! (`picked_up`, or the error).
//!
//! Every player also gets Hearth's replication `update`s: the position and player id of
//! everyone within 50 units, so players see each other walk (docs/protocol.md).
//!
//! Each message type derives both `Serialize` and `Deserialize`, so a Rust client
//! (`hearth_client`) sends and reads the very types the server uses.
//!
//! Malformed requests (a missing or mistyped field, an unknown one) never reach the game:
//! Hearth answers them with its own `bad_request` error.

use std::collections::BTreeMap;

use hearth::prelude::*;

/// What can be picked up in the arena. Anything else is refused as `unknown_item`.
pub const ITEMS: &[&str] = &["coin", "gem", "herb"];
/// Most of one item a player can carry; one more is refused as `stack_full`.
pub const MAX_STACK: u32 = 99;
/// Players within this distance of a speaker hear the chat (the speaker included).
pub const HEARING: f32 = 30.0;
/// Longest chat text, in characters (Unicode scalar values, not bytes). A longer one is
/// refused as `too_long` and reaches no one: cutting it would put words in the speaker's
/// mouth.
pub const MAX_CHAT_CHARS: usize = 200;
/// Farthest one `walk` goes; a longer request walks this far in its direction.
pub const STRIDE: f32 = 5.0;
/// Half the side of the square arena: positions stay within `[-ARENA_HALF_EXTENT, +..]`.
pub const ARENA_HALF_EXTENT: f32 = 100.0;

/// What a player carries: item name → count. Persisted as the record's `inventory` section
/// (a plain JSON object such as `{"gem":3}`), so a login restores it.
#[derive(Component, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Inventory(pub BTreeMap<String, u32>);

impl Inventory {
    /// How many of `item` the player carries.
    pub fn count(&self, item: &str) -> u32 {
        self.0.get(item).copied().unwrap_or(0)
    }

    /// What carrying one more `item` would make the count, or why it cannot be picked up.
    /// Reads only, so a refusal leaves the inventory unchanged (and the player not dirty).
    pub fn after_pickup(&self, item: &str) -> Result<u32, PickupRefusal> {
        if !ITEMS.contains(&item) {
            return Err(PickupRefusal::UnknownItem);
        }
        match self.count(item) {
            n if n >= MAX_STACK => Err(PickupRefusal::StackFull),
            n => Ok(n + 1),
        }
    }
}

/// `walk`: go up to [`STRIDE`] toward `(dx, dy)` at the next tick. Several walks within one
/// tick collapse into the latest, so sending faster gains no speed. `(0, 0)` stays put and
/// still answers `walked`: where am I.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, JsonSchema)]
pub struct Walk {
    pub dx: f32,
    pub dy: f32,
}

/// `walked`: where the walker stands now.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, JsonSchema)]
pub struct Walked {
    pub x: f32,
    pub y: f32,
}

/// `pickup`: take one `item` from the arena floor.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
pub struct Pickup {
    pub item: String,
}

/// `picked_up`: the player now carries `count` of `item`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
pub struct PickedUp {
    pub item: String,
    pub count: u32,
}

/// Why a pickup was refused (a game rule, not a protocol error): the `code` of its `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickupRefusal {
    /// Not one of [`ITEMS`]: `unknown_item`.
    UnknownItem,
    /// The player already carries [`MAX_STACK`] of it: `stack_full`.
    StackFull,
}

impl PickupRefusal {
    /// The refusal's `code` on the wire.
    pub fn code(self) -> &'static str {
        match self {
            Self::UnknownItem => "unknown_item",
            Self::StackFull => "stack_full",
        }
    }
}

/// `chat`: say `text` to everyone within [`HEARING`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
pub struct Chat {
    pub text: String,
}

/// `chat_line`: player `from` said `text` near the recipient.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
pub struct ChatLine {
    pub from: u64,
    pub text: String,
}

/// Why a chat was not said: the `code` of the `error` the speaker alone gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRefusal {
    /// Nothing but whitespace: `empty`.
    Empty,
    /// Over [`MAX_CHAT_CHARS`] characters: `too_long`.
    TooLong,
}

impl ChatRefusal {
    /// The refusal's `code` on the wire.
    pub fn code(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too_long",
        }
    }
}

impl Chat {
    /// Whether the text may be said.
    pub fn check(&self) -> Result<(), ChatRefusal> {
        if self.text.trim().is_empty() {
            Err(ChatRefusal::Empty)
        } else if self.text.chars().count() > MAX_CHAT_CHARS {
            Err(ChatRefusal::TooLong)
        } else {
            Ok(())
        }
    }
}

/// A walk asked for, applied at the next fixed tick (the latest request wins).
#[derive(Component, Clone, Copy, Debug, PartialEq)]
#[component(storage = "SparseSet")]
pub struct WalkIntent {
    pub dx: f32,
    pub dy: f32,
}

impl WalkIntent {
    /// The step `(dx, dy)` asks for, at most [`STRIDE`] long in the same direction;
    /// non-finite components (JSON numbers too large for `f32`) count as 0. The length is
    /// measured on the vector scaled by its largest component, so squaring cannot overflow.
    pub fn new(dx: f32, dy: f32) -> Self {
        let finite = |v: f32| if v.is_finite() { v } else { 0.0 };
        let (dx, dy) = (finite(dx), finite(dy));
        let largest = dx.abs().max(dy.abs());
        if largest == 0.0 {
            return Self { dx, dy };
        }
        let (ux, uy) = (dx / largest, dy / largest);
        let len = largest * ux.hypot(uy);
        if len <= STRIDE {
            Self { dx, dy }
        } else {
            let scale = STRIDE / ux.hypot(uy);
            Self {
                dx: ux * scale,
                dy: uy * scale,
            }
        }
    }
}

/// The request id of the walk a [`WalkIntent`] came from, for its `walked` to carry.
#[derive(Component, Clone, Debug, PartialEq)]
#[component(storage = "SparseSet")]
pub struct WalkRequest(pub Option<RequestId>);

/// Turns `walk` requests into the step taken at the next fixed tick.
fn take_walks(mut walks: MessageReader<FromClient<Walk>>, mut commands: Commands) {
    for walk in walks.read() {
        let intent = WalkIntent::new(walk.message.dx, walk.message.dy);
        commands
            .entity(walk.entity)
            .try_insert((intent, WalkRequest(walk.id.clone())));
    }
}

/// Takes pending steps within the arena's bounds (the intent stays until it is answered).
fn apply_walks(mut walkers: Query<(&WalkIntent, &mut Position), Without<Leaving>>) {
    for (intent, mut position) in &mut walkers {
        let bound = |v: f32| v.clamp(-ARENA_HALF_EXTENT, ARENA_HALF_EXTENT);
        // Only a real move changes the component, so standing still does not dirty the player.
        position.set_if_neq(Position {
            x: bound(position.x + intent.dx),
            y: bound(position.y + intent.dy),
        });
    }
}

/// Players whose walk [`apply_walks`] just took (a leaving player's walk is never taken).
type WalkedThisTick = (With<WalkIntent>, Without<Leaving>);

/// Tells each walker where it stands now and retires its intent, after [`apply_walks`]
/// moved it.
fn answer_walks(
    walkers: Query<(Entity, &Position, Option<&WalkRequest>), WalkedThisTick>,
    to_clients: ToClients<Walked>,
    mut commands: Commands,
) {
    for (entity, position, request) in &walkers {
        commands
            .entity(entity)
            .remove::<(WalkIntent, WalkRequest)>();
        let reply = Walked {
            x: position.x,
            y: position.y,
        };
        let id = request.and_then(|r| r.0.clone());
        to_clients.answer((entity, id), reply);
    }
}

/// Answers `pickup`: one more of the item in the inventory (Hearth saves it), or a refusal
/// that changes nothing.
fn pick_up(
    mut requests: MessageReader<FromClient<Pickup>>,
    mut players: Query<&mut Inventory, Without<Leaving>>,
    picked_up: ToClients<PickedUp>,
    refusals: Refusals,
) {
    for request in requests.read() {
        let Ok(mut inventory) = players.get_mut(request.entity) else {
            continue; // logging out: its final save is under way
        };
        let item = &request.message.item;
        match inventory.after_pickup(item) {
            Ok(count) => {
                inventory.0.insert(item.clone(), count);
                tracing::info!(player = %request.player, item = %item, count, "picked up");
                let reply = PickedUp {
                    item: item.clone(),
                    count,
                };
                picked_up.answer(request, reply);
            }
            Err(reason) => {
                let message = match reason {
                    PickupRefusal::UnknownItem => {
                        format!("there is no such item here; items: {}", ITEMS.join(", "))
                    }
                    PickupRefusal::StackFull => {
                        format!("you already carry {MAX_STACK}, the most one player can")
                    }
                };
                tracing::debug!(player = %request.player, ?reason, "pickup refused");
                refusals.refuse(request, reason.code(), message);
            }
        }
    }
}

/// Relays `chat` to every player within [`HEARING`] of the speaker, or refuses it to the
/// speaker alone.
fn relay_chat(
    mut said: MessageReader<FromClient<Chat>>,
    speakers: Query<&Position, Without<Leaving>>,
    nearby: NearbyPlayers,
    mut lines: ToClients<ChatLine>,
    refusals: Refusals,
) {
    for chat in said.read() {
        let Ok(at) = speakers.get(chat.entity) else {
            continue;
        };
        if let Err(reason) = chat.message.check() {
            let message = match reason {
                ChatRefusal::Empty => "say something".to_string(),
                ChatRefusal::TooLong => {
                    format!("at most {MAX_CHAT_CHARS} characters; nothing was said")
                }
            };
            tracing::debug!(player = %chat.player, ?reason, "chat refused");
            refusals.refuse(chat, reason.code(), message);
            continue;
        }
        let line = ChatLine {
            from: chat.player.0,
            text: chat.message.text.clone(),
        };
        let chars = line.text.chars().count();
        tracing::debug!(player = %chat.player, text = %line.text, "chat text");
        let heard = lines.send_near(&nearby, at.x, at.y, HEARING, line);
        tracing::info!(player = %chat.player, heard, chars, "chat");
    }
}

/// Logs every arrival with what it brought back from the store.
fn log_joins(mut joined: MessageReader<PlayerJoined>, players: Query<(&Position, &Inventory)>) {
    for j in joined.read() {
        if let Ok((at, inventory)) = players.get(j.entity) {
            tracing::info!(player = %j.player, x = at.x, y = at.y, inventory = ?inventory.0, "joined the arena");
        }
    }
}

/// Logs every departure (its final save is durable by now).
fn log_leaves(mut left: MessageReader<PlayerLeft>) {
    for l in left.read() {
        tracing::info!(player = %l.player, "left the arena");
    }
}

/// The arena game: persistent position and inventory (every player gets their defaults),
/// its messages and its systems. Add it to `HearthPlugins` instead of the demo game (both
/// persist `position`, which can be registered once).
pub struct ArenaPlugin;

impl Plugin for ArenaPlugin {
    fn build(&self, app: &mut App) {
        app.register_persistent::<Position>("position")
            .register_persistent::<Inventory>("inventory")
            .register_required_components::<PlayerId, Position>()
            .register_required_components::<PlayerId, Inventory>()
            .add_client_message::<Walk>("walk")
            .add_client_message::<Pickup>("pickup")
            .add_client_message::<Chat>("chat")
            .add_server_message::<Walked>("walked")
            .add_server_message::<PickedUp>("picked_up")
            .add_server_message::<ChatLine>("chat_line")
            // Players see each other walk: positions (1/64-unit fixed point in binary) and
            // player ids of everyone within 50 units, as `update`s.
            .replicate_with::<Position, QuantisedPositionEncoding>()
            .replicate::<PlayerId>()
            .add_systems(
                PreUpdate,
                (take_walks, pick_up, relay_chat).after(NetSystems::Receive),
            )
            .add_systems(FixedUpdate, (apply_walks, answer_walks).chain())
            .add_systems(Update, (log_joins, log_leaves));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_is_at_most_one_stride_and_ignores_non_finite_components() {
        let long = WalkIntent::new(300.0, 400.0);
        assert!((long.dx - 3.0).abs() < 1e-5 && (long.dy - 4.0).abs() < 1e-5);
        assert_eq!(WalkIntent::new(1.0, -2.0), WalkIntent { dx: 1.0, dy: -2.0 });
        let huge = WalkIntent::new(f32::MAX, f32::INFINITY);
        assert_eq!(
            huge,
            WalkIntent {
                dx: STRIDE,
                dy: 0.0
            }
        );
        assert_eq!(WalkIntent::new(0.0, 0.0), WalkIntent { dx: 0.0, dy: 0.0 });
    }

    #[test]
    fn chat_text_is_refused_when_empty_or_over_the_cap_in_characters() {
        let chat = |text: String| Chat { text };
        assert_eq!(chat("  \n".into()).check(), Err(ChatRefusal::Empty));
        assert_eq!(chat("é".repeat(MAX_CHAT_CHARS)).check(), Ok(()));
        assert_eq!(
            chat("a".repeat(MAX_CHAT_CHARS + 1)).check(),
            Err(ChatRefusal::TooLong)
        );
    }

    #[test]
    fn a_pickup_is_refused_for_an_unknown_item_or_a_full_stack() {
        let mut inventory = Inventory::default();
        assert_eq!(inventory.after_pickup("gem"), Ok(1));
        assert_eq!(
            inventory.after_pickup("sword"),
            Err(PickupRefusal::UnknownItem)
        );
        inventory.0.insert("gem".into(), MAX_STACK);
        assert_eq!(inventory.after_pickup("gem"), Err(PickupRefusal::StackFull));
    }
}
