//! The coins game: every player has a persistent [`Wallet`]; `collect` adds a coin, `balance`
//! tells the wallet, and `gift {"to", "amount"}` moves coins to another playing player. A
//! gift changes two players at once, so it is saved with a linked save (`SaveTogether`): both
//! wallets are durable together or neither is, and the gift is answered (`gifted` to the
//! giver, `gift_received` to the recipient) only once they are. A crash at any moment never
//! creates or destroys coins (tests/crash.rs).

use std::collections::HashMap;

use hearth::prelude::*;

/// Coins a new player starts with.
pub const STARTING_COINS: u64 = 100;

/// A player's coins (the record's `wallet` section).
#[derive(Component, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallet {
    /// Coins held.
    pub coins: u64,
}

impl Default for Wallet {
    fn default() -> Self {
        Self {
            coins: STARTING_COINS,
        }
    }
}

/// `{"type":"collect"}`: one more coin.
#[derive(Serialize, Deserialize, Debug, Clone, JsonSchema)]
pub struct Collect {}

/// `{"type":"balance"}`: the wallet, unchanged.
#[derive(Serialize, Deserialize, Debug, Clone, JsonSchema)]
pub struct Balance {}

/// `{"type":"gift","to":<player id>,"amount":<coins>}`.
#[derive(Serialize, Deserialize, Debug, Clone, JsonSchema)]
pub struct Gift {
    /// The recipient's player id (playing on this server).
    pub to: u64,
    /// Coins to give (at least 1, at most what the giver has).
    pub amount: u64,
}

/// `{"type":"wallet","coins":N}`: the answer to `collect` and `balance`.
#[derive(Serialize, Deserialize, Debug, Clone, JsonSchema)]
pub struct WalletMessage {
    pub coins: u64,
}

/// `{"type":"gifted","to","amount","coins"}`: the giver's gift is durable on both sides.
#[derive(Serialize, Deserialize, Debug, Clone, JsonSchema)]
pub struct Gifted {
    pub to: u64,
    pub amount: u64,
    /// The giver's coins after the gift.
    pub coins: u64,
}

/// `{"type":"gift_received","from","amount","coins"}`: to the recipient, once durable.
#[derive(Serialize, Deserialize, Debug, Clone, JsonSchema)]
pub struct GiftReceived {
    pub from: u64,
    pub amount: u64,
    /// The recipient's coins after the gift.
    pub coins: u64,
}

/// Why a gift is refused: the `code` of the standard `error` the giver gets (with its
/// request's `id`): a gift not made (`no_such_player` when the recipient is not playing here,
/// `to_self`, `zero_amount`, `not_enough_coins`), or made in the world but not saved together
/// (`not_saved`: the recipient or the giver was taken over by another server meanwhile; the
/// side still here is undone, so every wallet is as it was before the gift).
fn refusal_message(code: &str) -> &'static str {
    match code {
        "no_such_player" => "the recipient is not playing on this server",
        "to_self" => "a gift to yourself",
        "zero_amount" => "a gift of no coins",
        "not_enough_coins" => "you have fewer coins than that",
        _ => "the gift could not be saved; your coins are as they were before it",
    }
}

/// Gifts made in the world whose linked save is not answered yet, by tag.
#[derive(Resource, Default)]
struct PendingGifts {
    next_tag: u64,
    gifts: HashMap<u64, PendingGift>,
}

struct PendingGift {
    giver: (Entity, PlayerId),
    /// The gift request, answered when its save is: its `id` goes with the answer.
    request: AnswerTo,
    recipient: (Entity, PlayerId),
    amount: u64,
}

fn collect(
    mut requests: MessageReader<FromClient<Collect>>,
    mut wallets: Query<&mut Wallet>,
    answers: ToClients<WalletMessage>,
) {
    for request in requests.read() {
        if let Ok(mut wallet) = wallets.get_mut(request.entity) {
            wallet.coins += 1;
            answers.answer(
                request,
                WalletMessage {
                    coins: wallet.coins,
                },
            );
        }
    }
}

fn balance(
    mut requests: MessageReader<FromClient<Balance>>,
    wallets: Query<&Wallet>,
    answers: ToClients<WalletMessage>,
) {
    for request in requests.read() {
        if let Ok(wallet) = wallets.get(request.entity) {
            answers.answer(
                request,
                WalletMessage {
                    coins: wallet.coins,
                },
            );
        }
    }
}

/// Why a gift cannot be made.
fn check_gift(from: PlayerId, gift: &Gift, coins: u64) -> Result<(), &'static str> {
    if gift.to == from.0 {
        Err("to_self")
    } else if gift.amount == 0 {
        Err("zero_amount")
    } else if gift.amount > coins {
        Err("not_enough_coins")
    } else {
        Ok(())
    }
}

/// Moves the coins in the world and asks for both wallets to be saved together.
fn give(
    mut requests: MessageReader<FromClient<Gift>>,
    players: Players,
    mut wallets: Query<&mut Wallet>,
    mut pending: ResMut<PendingGifts>,
    mut together: MessageWriter<SaveTogether>,
    refusals: Refusals,
) {
    for request in requests.read() {
        let gift = &request.message;
        let coins = wallets.get(request.entity).map_or(0, |w| w.coins);
        if let Err(code) = check_gift(request.player, gift, coins) {
            refusals.refuse(request, code, refusal_message(code));
            continue;
        }
        let to = PlayerId(gift.to);
        let refused = "no_such_player";
        let Some(recipient) = players.playing(to) else {
            refusals.refuse(request, refused, refusal_message(refused));
            continue;
        };
        let Ok([mut from, mut into]) = wallets.get_many_mut([request.entity, recipient]) else {
            refusals.refuse(request, refused, refusal_message(refused));
            continue;
        };
        from.coins -= gift.amount;
        into.coins += gift.amount;
        pending.next_tag += 1;
        let tag = pending.next_tag;
        pending.gifts.insert(
            tag,
            PendingGift {
                giver: (request.entity, request.player),
                request: request.into(),
                recipient: (recipient, to),
                amount: gift.amount,
            },
        );
        together.write(SaveTogether {
            players: vec![request.entity, recipient],
            tag,
        });
    }
}

/// Answers gifts whose wallets are durable together.
fn answer_gifts(
    mut saved: MessageReader<SavedTogether>,
    mut pending: ResMut<PendingGifts>,
    mut wallets: Query<&mut Wallet>,
    gifted: ToClients<Gifted>,
    received: ToClients<GiftReceived>,
    refusals: Refusals,
) {
    for answer in saved.read() {
        let Some(gift) = pending.gifts.remove(&answer.tag) else {
            continue;
        };
        match answer.outcome {
            TogetherOutcome::Saved => {
                let coins = |entity| wallets.get(entity).map_or(0, |w| w.coins);
                gifted.answer(
                    gift.request,
                    Gifted {
                        to: gift.recipient.1.0,
                        amount: gift.amount,
                        coins: coins(gift.giver.0),
                    },
                );
                received.send(
                    gift.recipient.0,
                    GiftReceived {
                        from: gift.giver.1.0,
                        amount: gift.amount,
                        coins: coins(gift.recipient.0),
                    },
                );
            }
            TogetherOutcome::Abandoned { entity: lost } => {
                // The lost side is another server's now (or gone), as it was before the
                // gift: undo the side still here, which saves on its own from now on.
                let (kept, undo): (Entity, fn(&mut Wallet, u64)) = if lost == gift.recipient.0 {
                    (gift.giver.0, |w, amount| w.coins += amount)
                } else {
                    (gift.recipient.0, |w, amount| {
                        w.coins = w.coins.saturating_sub(amount)
                    })
                };
                if let Ok(mut wallet) = wallets.get_mut(kept) {
                    undo(&mut wallet, gift.amount);
                }
                refusals.refuse(gift.request, "not_saved", refusal_message("not_saved"));
            }
        }
    }
}

/// The coins game: a persistent wallet every player gets, its messages and systems.
pub struct CoinsPlugin;

impl Plugin for CoinsPlugin {
    fn build(&self, app: &mut App) {
        app.register_persistent::<Wallet>("wallet")
            .register_required_components::<PlayerId, Wallet>()
            .init_resource::<PendingGifts>()
            .add_client_message::<Collect>("collect")
            .add_client_message::<Balance>("balance")
            .add_client_message::<Gift>("gift")
            .add_server_message::<WalletMessage>("wallet")
            .add_server_message::<Gifted>("gifted")
            .add_server_message::<GiftReceived>("gift_received")
            .add_systems(
                PreUpdate,
                (collect, balance, give).after(NetSystems::Receive),
            )
            .add_systems(Update, answer_gifts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gift_is_refused_to_oneself_for_nothing_or_beyond_the_wallet() {
        let gift = |to, amount| Gift { to, amount };
        let me = PlayerId(1);
        assert_eq!(check_gift(me, &gift(1, 5), 10), Err("to_self"));
        assert_eq!(check_gift(me, &gift(2, 0), 10), Err("zero_amount"));
        assert_eq!(check_gift(me, &gift(2, 11), 10), Err("not_enough_coins"));
        assert_eq!(check_gift(me, &gift(2, 10), 10), Ok(()));
    }
}
