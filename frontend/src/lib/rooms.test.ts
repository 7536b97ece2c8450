import { describe, expect, it } from 'vitest';

import { openRoomIds, readRoomList, validRoomId, validRoomName, withRoom } from './rooms';

describe('the room list', () => {
  it("reads the server's list, skipping what is not a room", () => {
    expect(
      readRoomList([
        { roomid: 'room1', name: 'Lobby', archived: false },
        { roomid: 'old', name: 'Old &amp; gone', archived: true },
        { roomid: 'room1', name: 'again', archived: false },
        { name: 'no id' },
        null,
        'room9',
        { roomid: 'bare' },
      ]),
    ).toEqual([
      { roomid: 'room1', name: 'Lobby', archived: false },
      { roomid: 'old', name: 'Old &amp; gone', archived: true },
      { roomid: 'bare', name: 'bare', archived: false },
    ]);
    expect(readRoomList({ rooms: [] })).toBeNull();
    expect(readRoomList(undefined)).toBeNull();
  });

  it('lists the open rooms in the server’s order', () => {
    const list = readRoomList([
      { roomid: 'room2', name: 'b', archived: false },
      { roomid: 'room10', name: 'c', archived: true },
      { roomid: 'room1', name: 'a', archived: false },
    ])!;
    expect(openRoomIds(list)).toEqual(['room2', 'room1']);
  });

  it('replaces a changed room in place and adds a new one last', () => {
    const list = [
      { roomid: 'a', name: 'A', archived: false },
      { roomid: 'b', name: 'B', archived: false },
    ];
    expect(withRoom(list, { roomid: 'a', name: 'A', archived: true }).map((r) => [r.roomid, r.archived])).toEqual([
      ['a', true],
      ['b', false],
    ]);
    expect(withRoom(list, { roomid: 'c', name: 'C', archived: false }).map((r) => r.roomid)).toEqual(['a', 'b', 'c']);
    expect(list).toHaveLength(2);
  });

  it('checks new room ids and names as the server does', () => {
    for (const id of ['lobby', 'room_2', 'A', 'x'.repeat(32)]) expect(validRoomId(id)).toBe(true);
    for (const id of ['', 'x'.repeat(33), '10-9', 'has space', 'café', 'a/b']) expect(validRoomId(id)).toBe(false);
    for (const name of ['Lobby', ' 大厅 ', '🎉'.repeat(30), 'a'.repeat(30)]) expect(validRoomName(name)).toBe(true);
    for (const name of ['', '   ', 'a'.repeat(31), 'tab\there']) expect(validRoomName(name)).toBe(false);
  });
});
